//! natgw.toml: parsing and validation (pure).
