//! The README's scripting example, run as written (bash + curl) against a fresh gateway: a
//! GraphQL client that is not ours signs up, creates an API token, creates a class, schedules and
//! starts a session, and lists it.

mod support;

fn readme() -> String {
    std::fs::read_to_string(support::workspace_root().join("README.md")).unwrap()
}

/// The bash block after `<!-- api-example -->`, and the output the README says it prints.
fn example() -> (String, String) {
    let readme = readme();
    let after = &readme[readme
        .find("<!-- api-example -->")
        .expect("README marks the API example")..];
    let code = after
        .split("```bash\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("a bash block");
    let printed = after
        .split("It prints `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("the README says what it prints");
    (code.to_owned(), printed.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_curl_example_works_as_written() {
    let static_dir = tempfile::tempdir().unwrap();
    let server = support::TestServer::start(static_dir.path().to_owned()).await;
    let (code, printed) = example();
    let work = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &code])
        .current_dir(work.path())
        .env("BASE", &server.url)
        .output()
        .await
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the example failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), printed, "the README's stated output");
    assert!(work.path().join("cookies.txt").is_file());
    server.stop().await;
}
