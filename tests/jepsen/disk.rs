//! Disk faults on real processes: each node's data directory is a
//! size-limited `tmpfs` mount ([`QUOTA`]), so a full disk is a real
//! `ENOSPC` for the node's store. [`fill`] writes a filler file into the
//! directory until the file system refuses it; [`free`] deletes it (the
//! space returns). Mounting needs the privilege to (root, or
//! `CAP_SYS_ADMIN`); without it [`mount`] says why and the campaign skips
//! the fault.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

/// The size of each node's data directory.
pub const QUOTA: u64 = 64 << 20;
/// The filler's name in a data directory.
const FILLER: &str = "jepsen-filler";

/// Mounts a `tmpfs` of [`QUOTA`] bytes on each of `dirs` (created); the
/// reason if that is not possible (then nothing stays mounted).
pub fn mount(dirs: &[PathBuf]) -> Result<(), String> {
    if std::env::var("HOLOGRAM_JEPSEN_DISK").is_ok_and(|v| v == "0") {
        return Err("HOLOGRAM_JEPSEN_DISK=0".into());
    }
    for (i, dir) in dirs.iter().enumerate() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let out = Process::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={QUOTA}"), "tmpfs"])
            .arg(dir)
            .output();
        let failed = match out {
            Ok(o) if o.status.success() => continue,
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => format!("running mount: {e}"),
        };
        for done in &dirs[..i] {
            unmount(done);
        }
        return Err(format!("mounting a tmpfs on {}: {failed}", dir.display()));
    }
    Ok(())
}

/// Unmounts `dir` (lazily: a node still holding a file there does not
/// keep it).
pub fn unmount(dir: &Path) {
    let _ = Process::new("umount").arg("-l").arg(dir).status();
}

/// Fills `dir`'s file system with a filler file until it refuses a write;
/// the bytes written.
pub fn fill(dir: &Path) -> u64 {
    let mut file = std::fs::File::create(dir.join(FILLER)).expect("creating the filler");
    let chunk = vec![0xf1u8; 1 << 20];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    // Down to the last page.
    let mut page = [0u8; 4096];
    while let Ok(n @ 1..) = file.write(&page[..]) {
        written += n as u64;
        page[0] = page[0].wrapping_add(1);
    }
    written
}

/// Deletes the filler of `dir`, if any: the space returns.
pub fn free(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(FILLER));
}
