//! `wireline init`: the starter files, written all-or-nothing.
//!
//! Every file is written to a temporary name first and renamed into place only when all of
//! them were written, so an interrupted or failed init leaves no half-written config. An
//! existing `wireline.toml` or `.env.example` is never overwritten without `--force`; an
//! existing `.env` is never touched (it holds the user's secrets).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rand::RngCore;
use wireline_config::{STARTER_CONFIG, STARTER_ENV_EXAMPLE};

pub fn run(dir: &Path, force: bool) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create {}; choose a folder you may write to",
            dir.display()
        )
    })?;
    let config = dir.join("wireline.toml");
    let example = dir.join(".env.example");
    let dotenv = dir.join(".env");
    if !force {
        for existing in [&config, &example] {
            if existing.exists() {
                bail!(
                    "{} already exists; remove it, choose another folder, or pass --force to replace it",
                    existing.display()
                );
            }
        }
    }
    let mut files: Vec<(PathBuf, String, bool)> = vec![
        (config.clone(), STARTER_CONFIG.to_owned(), false),
        (example, STARTER_ENV_EXAMPLE.to_owned(), false),
    ];
    let writes_dotenv = !dotenv.exists();
    if writes_dotenv {
        files.push((dotenv.clone(), starter_dotenv(), true));
    }
    write_all_or_nothing(&files)?;
    println!("wrote {}", config.display());
    if writes_dotenv {
        println!(
            "wrote {} with a fresh agent token (keep it out of version control)",
            dotenv.display()
        );
    }
    println!(
        "next: wireline check -c {0} && wireline run -c {0}",
        config.display()
    );
    Ok(())
}

fn starter_dotenv() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "# Secrets for wireline.toml; never commit this file. See .env.example for every name.\nWIRELINE_ASSISTANT_TOKEN={token}\n"
    )
}

fn write_all_or_nothing(files: &[(PathBuf, String, bool)]) -> anyhow::Result<()> {
    let mut staged = Vec::new();
    for (path, contents, private) in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = path.with_file_name(format!("{name}.wireline-init-{}", std::process::id()));
        let written = write_file(&temporary, contents, *private);
        staged.push(temporary.clone());
        if let Err(error) = written {
            for file in &staged {
                let _ = fs::remove_file(file);
            }
            return Err(error).with_context(|| {
                format!(
                    "cannot write {}; check the folder's permissions and free space",
                    path.display()
                )
            });
        }
    }
    for ((path, _, _), temporary) in files.iter().zip(&staged) {
        fs::rename(temporary, path).with_context(|| format!("cannot create {}", path.display()))?;
    }
    Ok(())
}

fn write_file(path: &Path, contents: &str, private: bool) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}
