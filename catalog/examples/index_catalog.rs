//! (Re)writes the query index (`<cloud>.idx`, see `skycat_catalog::index`) of every
//! `<cloud>.parquet` in a directory: `catalog-data/` (the indexes the binary embeds) or a
//! `$SKYCAT_HOME/catalogs` filled by hand.
//!
//!   cargo run -p skycat-catalog --example index_catalog -- DIR

use std::path::PathBuf;

use skycat_catalog::{fsutil, index, parquet};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: index_catalog DIR")?);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    files.sort();
    for path in files {
        let bytes = std::fs::read(&path)?;
        let offers = parquet::read_offers_bytes_at(&path, &bytes)?;
        let out = index::index_path(&path);
        fsutil::write_atomic(&out, &index::encode(&offers, index::SourceStamp::of(&bytes)))?;
        println!("{}: {} rows", out.display(), offers.len());
    }
    Ok(())
}
