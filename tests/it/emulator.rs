//! The emulator driven through Google's own Rust clients.

use google_cloud_compute_v1::model::Address;

use crate::support::{EmulatorProcess, PROJECT, compute_addresses};

#[tokio::test]
async fn smoke_address_insert_get() {
    let emu = EmulatorProcess::seeded(&[]);
    let client = compute_addresses(&emu.url).await;
    let op = client
        .insert()
        .set_project(PROJECT)
        .set_region("europe-west1")
        .set_body(Address::new().set_name("natgw-ext"))
        .send()
        .await
        .expect("insert");
    eprintln!("{op:?}");
    let a = client
        .get()
        .set_project(PROJECT)
        .set_region("europe-west1")
        .set_address("natgw-ext")
        .send()
        .await
        .expect("get");
    eprintln!("{a:?}");
    eprintln!("{:?}", emu.requests());
}
