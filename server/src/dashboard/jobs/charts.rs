//! The cost charts: SVG drawn here like the price-history chart (no script, a few KB, readable
//! with scripts off), each with its figures in a table under a disclosure for keyboards and
//! screen readers.

use chrono::NaiveDate;

use super::render::money;
use crate::dashboard::html::esc;

/// Bars listed per chart at most (the rest are summed into one).
const MAX_BARS: usize = 12;

fn table(id: &str, key: &str, rows: &[(String, f64)]) -> String {
    let mut s = format!(
        "<details id=\"{id}-figures\"><summary>Figures</summary><table id=\"{id}-table\"><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">Cost</th></tr></thead><tbody>",
        esc(key)
    );
    for (k, v) in rows {
        s.push_str(&format!("<tr><td>{}</td><td class=\"num\">{}</td></tr>", esc(k), money(*v)));
    }
    s.push_str("</tbody></table></details>");
    s
}

/// A column per day (zeros included), the total and the dearest day in the title.
pub fn per_day(days: &[(NaiveDate, f64)]) -> String {
    let (w, h, left, right, top, bottom) = (480.0_f64, 220.0_f64, 64.0, 12.0, 16.0, 34.0);
    let max = days.iter().map(|d| d.1).fold(0.0_f64, f64::max).max(1e-9);
    let total: f64 = days.iter().map(|d| d.1).sum();
    let n = days.len().max(1) as f64;
    let slot = (w - left - right) / n;
    let bar = (slot * 0.8).max(1.0);
    let y = |v: f64| top + (1.0 - v / max) * (h - top - bottom);
    let mut s = format!(
        "<figure class=\"chart cost\"><svg id=\"cost-per-day\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-labelledby=\"cost-per-day-title\">\
         <title id=\"cost-per-day-title\">Metered cost per day: {total} over {n} days, at most {max} a day</title>\
         <line class=\"axis\" x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{yb}\"/><line class=\"axis\" x1=\"{left}\" y1=\"{yb}\" x2=\"{xr}\" y2=\"{yb}\"/>",
        total = money(total),
        n = days.len(),
        max = money(max),
        yb = h - bottom,
        xr = w - right,
    );
    for v in [0.0, max / 2.0, max] {
        s.push_str(&format!(
            "<text class=\"tick\" x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text><line class=\"grid\" x1=\"{left}\" x2=\"{xr}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\"/>",
            tx = left - 6.0,
            ty = y(v),
            label = money(v),
            xr = w - right,
        ));
    }
    for (i, (d, v)) in days.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let top_y = y(*v);
        s.push_str(&format!(
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{top_y:.1}\" width=\"{bar:.1}\" height=\"{:.1}\"><title>{}: {}</title></rect>",
            (h - bottom - top_y).max(0.0),
            d.format("%Y-%m-%d"),
            money(*v),
        ));
    }
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        s.push_str(&format!(
            "<text class=\"tick\" x=\"{left}\" y=\"{ty}\">{a}</text><text class=\"tick\" x=\"{xr}\" y=\"{ty}\" text-anchor=\"end\">{b}</text>",
            ty = h - bottom + 16.0,
            xr = w - right,
            a = first.0.format("%Y-%m-%d"),
            b = last.0.format("%Y-%m-%d"),
        ));
    }
    let rows: Vec<(String, f64)> = days.iter().map(|(d, v)| (d.format("%Y-%m-%d").to_string(), *v)).collect();
    s.push_str(&format!("</svg><figcaption>Per day (UTC)</figcaption>{}</figure>", table("cost-per-day", "Day", &rows)));
    s
}

/// Horizontal bars, dearest first; past [`MAX_BARS`] the rest are one bar.
pub fn bars(id: &str, title: &str, key: &str, items: &[(String, f64)]) -> String {
    let mut shown: Vec<(String, f64)> = items.iter().take(MAX_BARS).cloned().collect();
    if items.len() > MAX_BARS {
        let rest: f64 = items[MAX_BARS..].iter().map(|i| i.1).sum();
        shown.push((format!("{} others", items.len() - MAX_BARS), rest));
    }
    let row_h = 22.0_f64;
    let (w, label_w, value_w, top) = (480.0_f64, 150.0, 80.0, 6.0);
    let h = top * 2.0 + row_h * shown.len().max(1) as f64;
    let max = shown.iter().map(|i| i.1).fold(0.0_f64, f64::max).max(1e-9);
    let span = w - label_w - value_w;
    let mut s = format!(
        "<figure class=\"chart cost\"><svg id=\"{id}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-labelledby=\"{id}-title\">\
         <title id=\"{id}-title\">Metered cost {t}: {n} {key}(s), the dearest {top_item}</title>",
        t = esc(&title.to_lowercase()),
        n = items.len(),
        key = esc(key),
        top_item = shown.first().map(|(k, v)| format!("{} at {}", esc(k), money(*v))).unwrap_or_default(),
    );
    for (i, (k, v)) in shown.iter().enumerate() {
        let y = top + row_h * i as f64;
        let len = (v / max * span).max(1.0);
        // Long names are cut in the chart; the full name is in the bar's tooltip and the table.
        let label: String = if k.chars().count() > 22 { format!("{}…", k.chars().take(21).collect::<String>()) } else { k.clone() };
        s.push_str(&format!(
            "<text class=\"tick\" x=\"{lx}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>\
             <rect class=\"bar\" x=\"{label_w}\" y=\"{by:.1}\" width=\"{len:.1}\" height=\"{bh:.1}\"><title>{full}: {value}</title></rect>\
             <text class=\"tick\" x=\"{vx:.1}\" y=\"{ty:.1}\">{value}</text>",
            lx = label_w - 6.0,
            ty = y + row_h * 0.68,
            label = esc(&label),
            by = y + 3.0,
            bh = row_h - 6.0,
            full = esc(k),
            value = money(*v),
            vx = label_w + len + 4.0,
        ));
    }
    s.push_str(&format!("</svg><figcaption>{}</figcaption>{}</figure>", esc(title), table(id, key, &shown)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_names_its_figures_and_escapes_names() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let svg = per_day(&[(d("2026-12-01"), 0.5), (d("2026-12-02"), 0.0), (d("2026-12-03"), 1.5)]);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 3);
        assert!(svg.contains("$2.00 over 3 days") && svg.contains("2026-12-03: $1.50"), "{svg}");
        let items: Vec<(String, f64)> = (0..15).map(|i| (format!("<c{i}>"), 15.0 - i as f64)).collect();
        let svg = bars("x", "Per cluster", "cluster", &items);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), MAX_BARS + 1, "12 bars and one for the rest");
        assert!(svg.contains("3 others") && svg.contains("&lt;c0&gt;") && !svg.contains("<c0>"));
    }
}
