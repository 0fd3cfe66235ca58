//! The WireMock mapping loader (`wireline_mock::stubs::load`) on arbitrary JSON or TOML text
//! (the first byte picks which), written to a file in a scratch folder as the loader reads
//! files. Must not panic or hang (regexes are compiled at load); every error names the file.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

static DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("wireline-fuzz-stubs-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("__files")).expect("scratch folder");
    std::fs::write(dir.join("__files").join("body.json"), b"{\"ok\":true}").expect("body file");
    dir
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((first, text)) = data.split_first() else {
        return;
    };
    let name = if first & 1 == 0 {
        "mapping.json"
    } else {
        "mapping.toml"
    };
    let path = DIR.join(name);
    std::fs::write(&path, text).expect("write the mapping");
    if let Err(message) = wireline_mock::stubs::load(&path) {
        assert!(
            message.starts_with(&path.display().to_string()),
            "the error does not name the file: {message}"
        );
    }
    let _ = std::fs::remove_file(&path);
});
