//! `skycat serve` loads the catalog at the user's prices (config.yaml `prices:`): rows a rule
//! changes carry the effective price and say `custom: …` with the list price; a bad rule fails
//! the load (a refresh then keeps the last good catalog) naming its key.

use skycat_catalog::SkycatHome;

#[test]
fn the_served_catalog_is_at_the_users_prices() {
    let list_home = tempfile::tempdir().unwrap();
    let list = skycat_server::load_catalog(&SkycatHome::new(list_home.path())).expect("list catalog");
    let p4d = |offers: &[skycat_catalog::Offer]| {
        offers
            .iter()
            .find(|o| &*o.cloud == "aws" && &*o.instance_type == "p4d.24xlarge" && &*o.region == "us-east-1")
            .cloned()
            .expect("p4d.24xlarge in us-east-1")
    };
    let listed = p4d(&list.offers);
    assert!(listed.price_breakdown.as_deref().is_none_or(|b| !b.starts_with("custom:")));

    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("config.yaml"), "prices:\n  aws: {discount: 0.25}\n").unwrap();
    let mine = skycat_server::load_catalog(&SkycatHome::new(home.path())).expect("catalog at my prices");
    let o = p4d(&mine.offers);
    assert!((o.price.unwrap() - listed.price.unwrap() * 0.75).abs() < 1e-9, "{o:?}");
    assert_eq!(o.spot_price, listed.spot_price, "no spot_discount: spot stays at list");
    let note = o.price_breakdown.unwrap();
    assert!(note.starts_with("custom: prices.aws.discount 25%; list $"), "{note}");
    // Other clouds keep their list prices.
    let gcp = |offers: &[skycat_catalog::Offer]| offers.iter().filter(|o| &*o.cloud == "gcp").map(|o| o.price).collect::<Vec<_>>();
    assert_eq!(gcp(&mine.offers), gcp(&list.offers));

    std::fs::write(home.path().join("config.yaml"), "prices:\n  aws: {discount: 0.25, famlies: {p4d: 0.3}}\n").unwrap();
    let e = skycat_server::load_catalog(&SkycatHome::new(home.path())).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("prices.aws.famlies: unknown key") && !e.contains('\n'), "{e}");
}
