"""HyperPod submit path through the external CLI: a fake `hyperpod` executable on PATH records every call."""

from __future__ import annotations

import json
import os
import stat
import sys
import time

import boto3
import pytest
from moto import mock_aws

from nbkit.errors import UserError
from nbkit.train import aws, hyperpod
from nbkit.train.job import DryRunHandle
from nbkit.train.spec import JobSpec

REWARD = "arn:aws:lambda:us-east-1:123456789012:function:SageMaker-math-reward"

# Behaves like release_v2 of aws/sagemaker-hyperpod-cli as far as nbkit relies on it: `--recipe NAME` is read
# from the package's sagemaker_hyperpod_recipes/recipes_collection/recipes/NAME.yaml, and the launcher names the
# job run.name[:34] + "-" + 5 random characters (aws/sagemaker-hyperpod-recipes main.py valid_run_name).
FAKE_CLI = """#!{python}
import json, os, sys
import hyperpod_cli, yaml
state = os.environ["FAKE_HYPERPOD_STATE"]
args = sys.argv[1:]
with open(os.path.join(state, "calls.jsonl"), "a") as fh:
    fh.write(json.dumps(args + ["cwd=" + os.getcwd()]) + "\\n")
jobs_file = os.path.join(state, "jobs.json")
jobs = json.load(open(jobs_file)) if os.path.exists(jobs_file) else []
if os.environ.get("FAKE_HYPERPOD_FAIL") == args[0]:
    print("Error: cluster unreachable", file=sys.stderr)
    sys.exit(3)
if args[0] == "list-jobs":
    print(json.dumps({{"jobs": jobs}}, indent=1))
elif args[0] == "start-job":
    overrides = json.loads(args[args.index("--override-parameters") + 1])
    assert set(overrides) == {{"instance_type", "container"}}, overrides
    recipes = os.path.join(os.path.dirname(hyperpod_cli.__file__), "sagemaker_hyperpod_recipes",
                           "recipes_collection", "recipes")
    recipe = yaml.safe_load(open(os.path.join(recipes, args[args.index("--recipe") + 1] + ".yaml")))
    name = recipe["run"]["name"][:34] + "-x7k2q"
    os.makedirs("results", exist_ok=True)
    jobs.append({{"Name": name, "Namespace": args[args.index("--namespace") + 1], "State": "Running"}})
    json.dump(jobs, open(jobs_file, "w"))
    if os.environ.get("FAKE_HYPERPOD_NO_NAME"):
        print("submitted")
    else:
        print("Job submitted")
        print(f"NAME: {{name}}")
elif args[0] == "cancel-job":
    name = args[args.index("--job-name") + 1]
    json.dump([j for j in jobs if j["Name"] != name], open(jobs_file, "w"))
"""


@pytest.fixture
def fake_cli(tmp_path, monkeypatch):
    bindir, state = tmp_path / "bin", tmp_path / "state"
    bindir.mkdir()
    state.mkdir()
    exe = bindir / "hyperpod"
    exe.write_text(FAKE_CLI.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    package = tmp_path / "site" / "hyperpod_cli"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_HYPERPOD_STATE", str(state))
    return state


def calls(state, cwd=False):
    """The argv of every CLI call (with the folder it ran in as a last `cwd=` item when cwd=True)."""
    path = state / "calls.jsonl"
    made = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return made if cwd else [c[:-1] for c in made]


def set_jobs(state, jobs):
    (state / "jobs.json").write_text(json.dumps(jobs))


@pytest.fixture
def moto_session(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        sess = boto3.Session(region_name="us-east-1")
        sess.client("s3").create_bucket(Bucket="my-rft-bucket")
        yield sess


@pytest.fixture
def spec(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"{i}?"}]}) + "\n"
                            for i in range(120)))
    return JobSpec(backend="hyperpod", name="Math-RFT", model="nova-lite-2/prod", train_data=str(data),
                   reward=REWARD, dry_run=False,
                   hyper={"global_batch_size": 64, "max_steps": 10, "learning_rate": 7e-7},
                   aws={"s3_bucket": "my-rft-bucket", "cluster_name": "nova-cluster", "cluster_nodes": 8,
                        "probe_reward": False})


def test_submit_runs_exactly_the_planned_commands(fake_cli, moto_session, spec, tmp_path, capsys):
    plan = hyperpod.plan(spec)
    assert plan.job_name == plan.job_name.lower() and len(plan.job_name) <= 34  # Kubernetes, launcher cap
    handle = hyperpod.submit(plan, tmp_path, session=moto_session)
    made = calls(fake_cli, cwd=True)
    work = tmp_path / "training" / "hyperpod"
    assert [c[:-1] for c in made] == [plan.request["connect"][1:], ["list-jobs", "--namespace", "kubeflow"],
                                      plan.request["start"][1:]]
    # Finding: start-job wrote results/ into whatever the current folder was; it now runs in the run folder.
    assert made[0][-1] == made[2][-1] == f"cwd={work}" and (work / "results").is_dir()
    assert (work / plan.recipe_file).read_text() == plan.recipe_yaml
    collection = tmp_path / "site" / "hyperpod_cli" / hyperpod.RECIPES_DIR
    assert (collection / f"{plan.recipe_name}.yaml").read_text() == plan.recipe_yaml
    assert handle.job_id == f"{plan.job_name}-x7k2q"
    assert f"started HyperPod job {plan.job_name}-x7k2q" in capsys.readouterr().out
    data_key = plan.recipe["run"]["data_s3_path"].split("my-rft-bucket/", 1)[1]
    moto_session.client("s3").head_object(Bucket="my-rft-bucket", Key=data_key)  # uploaded

    assert handle.status() == "running"
    set_jobs(fake_cli, [{"Name": handle.job_id, "State": "Succeeded"}])
    assert handle.status() == "completed"
    set_jobs(fake_cli, [{"Name": handle.job_id, "State": "Running"}])
    handle.stop()
    assert calls(fake_cli)[-1] == ["cancel-job", "--job-name", handle.job_id, "--namespace", "kubeflow"]
    assert handle.status() == "stopped"  # gone from the cluster and no manifest written


def test_resubmitting_the_same_plan_attaches(fake_cli, moto_session, spec, tmp_path, capsys):
    """Finding: with names over 34 characters the launcher cut the digest, so this match failed. The run name
    is capped at 34 and the launcher's suffix is matched exactly (another plan's job does not match)."""
    long = spec.model_copy(update={"name": "a-much-longer-experiment-name-than-34-characters"})
    plan = hyperpod.plan(long)
    first = hyperpod.submit(plan, tmp_path, session=moto_session)
    set_jobs(fake_cli, [{"Name": f"{plan.job_name}x-abcde", "State": "Running"},
                        {"Name": first.job_id, "State": "Running"}])
    again = hyperpod.submit(plan, tmp_path, session=moto_session)
    starts = [c for c in calls(fake_cli) if c[0] == "start-job"]
    assert len(starts) == 1 and again.job_id == first.job_id
    assert "already exists" in capsys.readouterr().out


def test_cli_failures_are_reported_and_never_retried(fake_cli, moto_session, spec, tmp_path, monkeypatch):
    plan = hyperpod.plan(spec)
    monkeypatch.setenv("FAKE_HYPERPOD_FAIL", "start-job")
    with pytest.raises(UserError, match=r"(?s)starting HyperPod job .* failed \(exit 3\).*cluster unreachable"):
        hyperpod.submit(plan, tmp_path, session=moto_session)
    assert [c[0] for c in calls(fake_cli)].count("start-job") == 1
    monkeypatch.delenv("FAKE_HYPERPOD_FAIL")
    monkeypatch.setenv("FAKE_HYPERPOD_NO_NAME", "1")
    set_jobs(fake_cli, [])
    with pytest.raises(UserError, match="without printing `NAME: <job>`"):
        hyperpod.submit(plan, tmp_path, session=moto_session)


def test_missing_cli_says_how_to_install(moto_session, spec, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(UserError, match="not on PATH.*sagemaker-hyperpod-cli"):
        hyperpod.submit(hyperpod.plan(spec), tmp_path, session=moto_session)


def test_dry_run_runs_no_command(fake_cli, spec, tmp_path, capsys):
    plan = hyperpod.plan(spec.model_copy(update={"dry_run": True}))
    assert isinstance(hyperpod.submit(plan, tmp_path), DryRunHandle)
    assert calls(fake_cli) == []
    assert "hyperpod start-job --namespace kubeflow --recipe" in capsys.readouterr().out


def test_outputs_and_logs(fake_cli, moto_session, tmp_path):
    s3 = moto_session.client("s3")
    s3.put_object(Bucket="my-rft-bucket", Key="out/job-a/manifest.json",
                  Body=b'{"checkpoint_s3_bucket": "s3://customer-escrow-1-smhp-2/job-a/step10"}')
    s3.put_object(Bucket="my-rft-bucket", Key="out/job-a/step_wise_training_metrics.csv",
                  Body=b"step_number,train_reward_mean\n1,0.3\n")
    handle = hyperpod.HyperPodJobHandle("job-a", tmp_path, "us-east-1", "nova-cluster", "kubeflow",
                                        "s3://my-rft-bucket/out", session=moto_session)
    folder = handle.outputs()
    assert json.loads((folder / "manifest.json").read_text())["checkpoint_s3_bucket"].endswith("step10")
    assert handle.status() == "completed"  # not listed by the CLI, manifest present

    logs = moto_session.client("logs")
    group = "/aws/sagemaker/Clusters/nova-cluster/abc123"
    now = int(time.time() * 1000)
    logs.create_log_group(logGroupName=group)
    for stream, t, message in (("node-1", now - 60_000, "before the job"),
                               ("node-1", now + 1, "Training epoch 0, iteration 1/9 | train_rm_score: 0.5"),
                               ("node-2", now + 2, "Training epoch 0, iteration 2/9 | train_rm_score: 0.6")):
        if stream not in [s["logStreamName"] for s in logs.describe_log_streams(logGroupName=group)["logStreams"]]:
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[{"timestamp": t, "message": message}])
    lines = aws.log_lines_since(logs, group, now)
    assert lines == ["Training epoch 0, iteration 1/9 | train_rm_score: 0.5",
                     "Training epoch 0, iteration 2/9 | train_rm_score: 0.6"]


def test_handle_round_trip(tmp_path):
    handle = hyperpod.HyperPodJobHandle("job-a", tmp_path, "us-east-1", "c", "kubeflow", "s3://b/o", submitted_ms=5)
    assert hyperpod.handle_from_dict(handle.to_dict(), tmp_path).to_dict() == handle.to_dict()
