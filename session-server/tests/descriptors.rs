//! `reserve_descriptors` grows the descriptor table and gives back what it
//! took. Alone in its binary, so no other test opens files meanwhile.

use std::fs;

/// The process's open descriptors.
fn open_descriptors() -> usize {
    fs::read_dir("/proc/self/fd").expect("procfs").count()
}

/// The size of the process's descriptor table (`FDSize` in
/// `/proc/self/status`).
fn table_size() -> usize {
    let status = fs::read_to_string("/proc/self/status").expect("procfs");
    status
        .lines()
        .find_map(|line| line.strip_prefix("FDSize:"))
        .and_then(|size| size.trim().parse().ok())
        .expect("FDSize in /proc/self/status")
}

#[test]
fn the_table_grows_and_every_descriptor_is_given_back() {
    // 900: below the smallest common open-file limit (1,024) with the
    // runner's own descriptors, so all of them are held.
    const COUNT: usize = 900;
    let before = open_descriptors();
    assert!(
        table_size() < COUNT,
        "the table starts small: {}",
        table_size()
    );
    assert_eq!(session_server::reserve_descriptors(COUNT), COUNT);
    assert!(table_size() >= COUNT, "FDSize {}", table_size());
    assert_eq!(open_descriptors(), before);
    assert_eq!(session_server::reserve_descriptors(0), 0);
}
