//! Commands and exit codes.

use crate::{run, text, wireline};

#[test]
fn version_and_help_on_every_command() {
    let version = run(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert!(text(&version.stdout).starts_with("wireline "));
    for command in [
        &["--help"][..],
        &["init", "--help"],
        &["check", "--help"],
        &["run", "--help"],
        &["schema", "--help"],
    ] {
        let output = run(command);
        assert_eq!(output.status.code(), Some(0), "{command:?}");
        assert!(
            text(&output.stdout).contains("Usage: wireline"),
            "{command:?}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [&["no-such-command"][..], &["check", "--no-such-flag"], &[]] {
        assert_eq!(run(args).status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn init_then_check_passes_and_init_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("project");
    let init = run(&["init", target.to_str().expect("utf-8 path")]);
    assert_eq!(init.status.code(), Some(0), "{}", text(&init.stderr));
    for file in ["wireline.toml", ".env.example", ".env"] {
        assert!(target.join(file).is_file(), "{file} written");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(target.join(".env"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, ".env is private to its owner");
    }
    let config = target.join("wireline.toml");
    let check = wireline()
        .args(["check", "-c"])
        .arg(&config)
        .env_remove("WIRELINE_ASSISTANT_TOKEN")
        .output()
        .expect("runs");
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
    assert!(text(&check.stdout).contains("ok (0 warning(s))"));

    let before = std::fs::read_to_string(&config).expect("read");
    let again = run(&["init", target.to_str().expect("utf-8 path")]);
    assert_eq!(again.status.code(), Some(1));
    let stderr = text(&again.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&config).expect("read"),
        before,
        "nothing overwritten"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&target)
        .expect("list")
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .contains("wireline-init")
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files left: {leftovers:?}"
    );
}

/// A bad config: `check` lists every finding on stdout and exits 1 with one line on stderr;
/// `run` exits 1 with the first error on one line.
#[track_caller]
fn check_bad_config(config: &str, envs: &[(&str, &str)], expected: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("wireline.toml");
    std::fs::write(&path, config).expect("write");
    for command in ["check", "run"] {
        let output = wireline()
            .args([command, "-c"])
            .arg(&path)
            .envs(envs.iter().copied())
            .output()
            .expect("runs");
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert_eq!(output.status.code(), Some(1), "{command}: {stdout}{stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{command}: one line on stderr: {stderr}"
        );
        let shown = if command == "check" { stdout } else { stderr };
        for fragment in expected {
            assert!(
                shown.contains(fragment),
                "{command}: expected {fragment:?} in {shown}"
            );
        }
    }
}

#[test]
fn bad_input_gets_one_clear_line() {
    check_bad_config("[server\n", &[], &["wireline.toml:1:8", "error"]);
    check_bad_config(
        "[sever]\n",
        &[],
        &[
            "wireline.toml:1:2",
            "unknown field `sever`",
            "fix its spelling",
        ],
    );
    check_bad_config(
        "[server]\nshutdown_grace = \"soon\"\n",
        &[],
        &[
            "wireline.toml:2:18",
            "server.shutdown_grace",
            "e.g. \"250ms\"",
        ],
    );
    check_bad_config(
        "[agents.bot]\ntoken = \"${env:WIRELINE_TEST_UNSET_TOKEN}\"\nscopes = [\"events:read\"]\n",
        &[],
        &[
            "wireline.toml:2:9",
            "agents.bot.token",
            "WIRELINE_TEST_UNSET_TOKEN is not set",
            ".env",
        ],
    );
    check_bad_config(
        "[agents.bot]\ntoken = \"${file:missing.secret}\"\nscopes = [\"events:read\"]\n",
        &[],
        &[
            "agents.bot.token",
            "cannot read secret file",
            "missing.secret",
        ],
    );
    check_bad_config(
        "[services.slack]\nbase_url = \"https://slack.com/api\"\nauth = { bearer = \"xoxb-17653672481-19874698323-pdFZKVeTuE8sk\" }\n",
        &[],
        &[
            "wireline.toml:3:19",
            "services.slack.auth.bearer",
            "starts with `xoxb-`",
            "${env:NAME}",
        ],
    );
}

#[test]
fn a_missing_config_file_says_how_to_make_one() {
    let output = run(&["check", "-c", "/nonexistent/wireline.toml"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stdout).contains("wireline init"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn schema_prints_json_schema_and_markdown() {
    let json = run(&["schema"]);
    assert_eq!(json.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert!(
        schema["$schema"]
            .as_str()
            .is_some_and(|s| s.contains("json-schema.org"))
    );
    assert_eq!(schema["title"], "wireline.toml");
    let markdown = run(&["schema", "--format", "markdown"]);
    assert!(text(&markdown.stdout).starts_with("# wireline.toml reference"));
}
