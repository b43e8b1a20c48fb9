//! End-to-end sandbox tests on a busybox rootfs (root mode; rootless is in
//! `sandbox_rootless.rs`).

mod common;

use common::*;
use imgbuild_builder::sandbox::RunError;

#[test]
fn writes_land_in_upper() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let (r, lines) = f.sh("echo hi > /root/hello && cat /etc/motd && id -u");
    r.unwrap();
    assert_eq!(lines, vec!["hello from the lower", "0"]);
    assert_eq!(std::fs::read_to_string(f.upper().join("root/hello")).unwrap(), "hi\n");
}
