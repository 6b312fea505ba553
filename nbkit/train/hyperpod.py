"""SageMaker HyperPod (SMHP) backend: Nova 2 Lite RFT through the external `hyperpod` CLI, the SDK's way.

The CLI (release_v2 of aws/sagemaker-hyperpod-cli) runs in its own environment, so it is an external command.
What it does with our input, and why this module sends almost nothing on its command line:
- `--override-parameters` values become `key={value}` Hydra arguments (commands/job.py start_training_job), so a
  JSON null reaches the launcher as the *string* "None" (reasoning "off" would become reasoning "None");
- `--recipe NAME` becomes `recipes=NAME`, a recipe of the CLI's own collection
  (`<hyperpod_cli>/sagemaker_hyperpod_recipes/recipes_collection/recipes/NAME.yaml`);
- `base_results_dir` is `./results` of the current folder;
- the launcher keeps `run.name[:34]` and appends `-` plus 5 random characters (main.py valid_run_name).
So, like the sagemaker SDK (sagemaker-train 1.27.0 base_trainer.py _train_hyperpod), `plan` renders the fully
resolved recipe, `submit` writes it into the run folder and into the CLI's collection and passes its name as
`--recipe`, with only `instance_type` and `container` as overrides; the run name is at most 34 characters and
ends with the request digest, so a resubmitted plan finds its job; the CLI runs inside the run folder.
Status and cancel go through `hyperpod list-jobs` / `hyperpod cancel-job`; logs come from CloudWatch
(`/aws/sagemaker/Clusters/<cluster>/<id>`), outputs from `s3://<output_s3_path>/<job>/`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from nbkit.errors import UserError
from nbkit.layout import RunLayout
from nbkit.train import aws, sagemaker
from nbkit.train import recipes as rec
from nbkit.train.archive import safe_extract
from nbkit.train.job import JobHandle, JobStatus, Plan
from nbkit.train.spec import JobSpec, surface_default, with_surface_defaults

INSTANCE_TYPES = ("ml.p5.48xlarge",)
MIN_CLUSTER_NODES = 8  # documented compute requirement for Nova 2 Lite RFT on HyperPod
CLI = "hyperpod"
RUN_NAME_LIMIT = 34  # main.py valid_run_name keeps run_name[:34]
RECIPES_DIR = Path("sagemaker_hyperpod_recipes") / "recipes_collection" / "recipes"  # inside the hyperpod_cli package
COLLECTION_DIR = {"train": "fine-tuning/nova/nbkit", "eval": "evaluation/nova/nbkit"}
# Images the HyperPod launcher is given as `container` (aws/sagemaker-hyperpod-recipes
# launcher/recipe_templatization/nova/nova_regional_parameters.json, k8s container_image of
# nova_lite_2_0_p5_gpu_rft; AWS's HyperPod RFT notebook passes the evaluation image for rft_eval).
TRAIN_IMAGE_TAG = "nova-fine-tune-repo:SM-HP-RFT-TRAIN-V2-latest"
EVAL_IMAGE_TAG = "nova-evaluation-repo:SM-HP-Eval-V2-latest"
# launcher/nova/constants/rft_container_constants.py RFT_REGION_ACCOUNT_MAP: the regions whose RFT generation,
# storm, NATS and Redis images the RFT launcher can name (utils.py raises "Nova RFT recipes are not supported
# for region" elsewhere). us-west-2 has Nova images but is missing here.
LAUNCHER_RFT_REGIONS = ("us-east-1", "ap-northeast-1", "eu-central-1", "eu-west-2")
_NAME_LINE = re.compile(r"^\s*NAME:\s*(\S+)\s*$", re.MULTILINE)
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_CLUSTER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


class HyperPodPlan(Plan):
    """What `hyperpod` would be asked to run; `request` holds the argv of each command, in order."""

    backend: str = "hyperpod"
    kind: str = "train"
    region: str
    job_name: str = Field(description="recipes.run.name (<= 34 characters); the launcher appends -<5 random>")
    cluster_name: str
    namespace: str
    recipe_template: str
    recipe: dict[str, Any]
    recipe_yaml: str
    recipe_name: str = Field(description="the --recipe name: the rendered recipe's place in the CLI's collection")
    overrides: dict[str, Any] = Field(description="the --override-parameters JSON object (instance_type, container)")
    uploads: list[dict[str, Any]]
    reward: dict[str, Any]
    output_s3_path: str

    @property
    def argv(self) -> list[str]:
        return self.request["start"]

    def describe(self) -> str:
        head = super().describe()
        if self.kind == "eval":
            head = head.replace(" plan for job", " rft_eval plan for job", 1)
        lines = [head, "uploads (content-addressed; skipped when already there):"]
        lines += [f"  {u['source']} -> {u['uri']}" for u in self.uploads] or ["  (none: data is on S3)"]
        lines.append(sagemaker._reward_line(self.reward))
        lines += aws.provenance_lines(self.spec)
        lines.append(f"output: {self.output_s3_path}/<job>/manifest.json")
        lines.append(f"job name at submit: {self.job_name}-<5 random characters> (the launcher's suffix)")
        lines.append(f"recipe file: <run>/training/hyperpod/{self.recipe_file} (written at submit, copied to the "
                     f"CLI's recipes_collection/recipes/{self.recipe_name}.yaml)")
        lines.append("commands (shell form, run inside <run>/training/hyperpod):")
        lines += ["  " + shell_line(argv) for argv in self.request.values()]
        lines.append(f"resolved recipe ({self.recipe_template} with the spec's values):")
        lines += ["  " + line for line in self.recipe_yaml.rstrip().splitlines()]
        return "\n".join(lines)

    @property
    def recipe_file(self) -> str:
        return self.recipe_name.rsplit("/", 1)[-1] + ".yaml"


def shell_line(argv: list[str]) -> str:
    """The argv as one copy-pasteable shell line."""
    import shlex

    return " ".join(shlex.quote(a) for a in argv)


# ----------------------------------------------------------------------------------------------- plan


def plan(spec: JobSpec) -> HyperPodPlan:
    """The HyperPod job for `spec`: the resolved recipe and the exact CLI argv. Pure; all problems at once."""
    spec = with_surface_defaults(spec)
    surface = spec.surface
    problems, warnings = aws.spec_problems(spec, surface)
    region = spec.aws.region
    problems += aws.check_region(region, tuple(aws.NOVA_IMAGE_ACCOUNTS), "HyperPod (Nova images)")
    region_warning(region, warnings)
    _cluster_problems(spec, problems)
    replicas = _replicas(spec, surface, problems, warnings)
    sagemaker._instance_type(spec.aws.instance_type, problems, INSTANCE_TYPES)
    problems += aws.check_mlflow_arn(spec.aws.mlflow_tracking_uri, "aws.mlflow_tracking_uri")

    base = aws.s3_base(spec.aws.s3_bucket, spec.aws.s3_prefix, problems)
    output = aws.output_location(spec, base, problems)
    data_uri, data_upload = aws.plan_data(spec.train_data, "train_data", base, problems)
    model = aws.nova_base_model(spec, problems)
    reward = aws.plan_reward(spec, region, problems, target="hyperpod")
    steps = sagemaker.resolve_steps(spec, problems, warnings)
    concurrency = spec.aws.lambda_concurrency_limit or surface_default(surface, "lambda_concurrency_limit")
    sagemaker.note_unexposed(spec, "smhp", warnings)
    if spec.aws.tags:
        warnings.append("aws.tags: HyperPod jobs are Kubernetes jobs of the cluster; the CLI takes no tags (ignored)")
    aws.raise_problems(problems, f"HyperPod plan for {spec.name!r}")

    values = sagemaker.recipe_values(spec, surface, model=model, data_uri=data_uri, reward_arn=reward["arn"],
                                     replicas=replicas, concurrency=concurrency, steps=steps)
    values |= {
        "run.output_s3_path": output,
        "run.generation_replicas": spec.aws.generation_replicas,
        "run.rollout_worker_replicas": spec.aws.rollout_worker_replicas,
        "run.mlflow_tracking_uri": spec.aws.mlflow_tracking_uri,
        "run.mlflow_experiment_name": spec.aws.mlflow_experiment_name or "rft-workbench",
    }
    template = rec.template(surface)
    digest = aws.digest({"recipe": template.upstream, "values": values, "instance_type": spec.aws.instance_type})
    name = run_name(spec.name, digest)
    values["run.name"] = name
    values["run.mlflow_run_name"] = name
    image = image_uri(region, "train")
    return build(spec, "train", surface, name, values, [data_upload], reward, output, warnings, image)


def run_name(base: str, digest: str) -> str:
    """`<base>-<8 hex>` in at most 34 lowercase characters: the launcher keeps run.name[:34] and appends
    `-<5 random>`, so a longer name would lose the digest that lets a resubmitted plan find its job."""
    return aws.job_name(base.lower(), digest, limit=RUN_NAME_LIMIT)


def image_uri(region: str, kind: str) -> str:
    """The HyperPod image the launcher is given as `container` (training, or rft_eval's evaluation image)."""
    tag = TRAIN_IMAGE_TAG if kind == "train" else EVAL_IMAGE_TAG
    return f"{aws.NOVA_IMAGE_ACCOUNTS[region]}.dkr.ecr.{region}.amazonaws.com/{tag}"


def region_warning(region: str, warnings: list[str]) -> None:
    if region in aws.NOVA_IMAGE_ACCOUNTS and region not in LAUNCHER_RFT_REGIONS:
        warnings.append(
            f"aws.region = {region!r}: the HyperPod RFT launcher's region table (aws/sagemaker-hyperpod-recipes "
            "launcher/nova/constants/rft_container_constants.py RFT_REGION_ACCOUNT_MAP) has no RFT generation "
            f"container for {region}, although nova_regional_parameters.json lists one; the launcher may stop "
            "with 'Nova RFT recipes are not supported for region'. us-east-1 and ap-northeast-1 are in both")


def build(spec: JobSpec, kind: str, template_key: str, name: str, values: dict[str, Any],
          uploads: list[aws.Upload | None], reward: dict[str, Any], output: str, warnings: list[str],
          image: str) -> HyperPodPlan:
    """Resolve the recipe and render the commands (shared with rft_eval). Only `instance_type` and
    `container` go on the command line: every other value is in the recipe file, where a null stays null."""
    template = rec.template(template_key)
    values = {"run.name": values["run.name"], **values}  # name first, as in AWS's examples
    recipe = rec.resolve(rec.apply(rec.load(template_key), values))
    text = rec.dump(recipe)
    recipe_name = f"{COLLECTION_DIR[kind]}/{name}"
    overrides = {"instance_type": spec.aws.instance_type, "container": image}
    ns = spec.aws.namespace
    request = {
        "connect": [CLI, "connect-cluster", "--cluster-name", spec.aws.cluster_name, "--region", spec.aws.region,
                    "--namespace", ns],
        "start": [CLI, "start-job", "--namespace", ns, "--recipe", recipe_name,
                  "--override-parameters", json.dumps(overrides)],
    }
    return HyperPodPlan(
        spec=spec, kind=kind, region=spec.aws.region, job_name=name, cluster_name=spec.aws.cluster_name,
        namespace=ns, recipe_template=template.upstream, recipe=recipe, recipe_yaml=text, recipe_name=recipe_name,
        overrides=overrides, request=request, warnings=warnings,
        uploads=[u.to_dict() for u in uploads if u is not None], reward=reward, output_s3_path=output,
    )


def _cluster_problems(spec: JobSpec, problems: list[str]) -> None:
    a = spec.aws
    if not _CLUSTER_NAME.match(a.cluster_name or ""):
        problems.append(f"aws.cluster_name = {a.cluster_name!r}: set the HyperPod cluster's name (letters, digits, "
                        "hyphens; `aws sagemaker list-clusters` lists yours)")
    if not _K8S_NAME.match(a.namespace or ""):
        problems.append(f"aws.namespace = {a.namespace!r}: a Kubernetes namespace (lowercase letters, digits, "
                        "hyphens), e.g. kubeflow")


def _replicas(spec: JobSpec, surface: str, problems: list[str], warnings: list[str]) -> int:
    """run.replicas in {2, 4, 8, 16}; the cluster must have the documented 8+ p5 nodes."""
    a = spec.aws
    replicas = a.instance_count or surface_default(surface, "instance_count")
    allowed = surface_default(surface, "instance_counts")
    if replicas not in allowed:
        problems.append(f"aws.instance_count = {replicas}: HyperPod run.replicas must be one of "
                        f"{', '.join(map(str, allowed))}")
    if a.cluster_nodes is None:
        warnings.append(f"aws.cluster_nodes not set: Nova 2 Lite RFT on HyperPod needs at least {MIN_CLUSTER_NODES} "
                        "ml.p5.48xlarge nodes in the cluster's restricted instance group; set it to have this checked")
        return replicas
    if a.cluster_nodes < MIN_CLUSTER_NODES:
        problems.append(f"aws.cluster_nodes = {a.cluster_nodes}: Nova 2 Lite RFT on HyperPod needs at least "
                        f"{MIN_CLUSTER_NODES} ml.p5.48xlarge nodes")
    used = replicas + a.generation_replicas + a.rollout_worker_replicas
    if used > a.cluster_nodes:
        warnings.append(f"replicas {replicas} + generation_replicas {a.generation_replicas} + rollout_worker_replicas "
                        f"{a.rollout_worker_replicas} = {used} exceeds aws.cluster_nodes = {a.cluster_nodes}")
    return replicas


# --------------------------------------------------------------------------------------------- submit


def run_cli(argv: list[str], what: str, timeout: float = 600, cwd: str | os.PathLike | None = None) -> str:
    """Run one `hyperpod` command (in `cwd`: start-job writes `results/` there); a failure raises with the
    command's own output (never retried)."""
    exe = cli_path(argv[0], what)
    try:
        done = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=timeout, check=False,
                              cwd=cwd)
    except subprocess.TimeoutExpired:
        raise UserError(f"{what}: `{shell_line(argv)[:200]}` did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-2000:]
        raise UserError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def cli_path(name: str, what: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise UserError(
            f"{what}: the `{name}` command is not on PATH. Install the HyperPod CLI used by AWS's Nova recipes "
            "(git clone https://github.com/aws/sagemaker-hyperpod-cli, branch release_v2, `pip install .`, in "
            "its own environment) and make sure `hyperpod --help` works; or keep dry_run: true"
        )
    return exe


def collection_dir() -> Path:
    """The CLI's recipes collection (`recipes=NAME` reads NAME.yaml there), found through the interpreter the
    `hyperpod` script runs with, since the CLI lives in its own environment."""
    exe = cli_path(CLI, "finding the HyperPod CLI's recipes")
    with open(exe, "rb") as fh:
        first = fh.readline().decode(errors="replace").strip()
    python = first[2:].strip().split()[0] if first.startswith("#!") else ""
    if not python:
        raise UserError(f"{exe} is not a Python script with a #! line; cannot find the HyperPod CLI's package")
    probe = "import hyperpod_cli, os; print(os.path.dirname(hyperpod_cli.__file__))"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise UserError(f"the HyperPod CLI's interpreter {python} cannot import hyperpod_cli:\n{done.stderr[-800:]}")
    return Path(done.stdout.strip()) / RECIPES_DIR


def write_recipe(plan: HyperPodPlan, run_dir: str | os.PathLike) -> Path:
    """The rendered recipe into <run>/training/hyperpod (reviewable, and the CLI's working folder) and into the
    CLI's collection under the plan's --recipe name; returns the working folder."""
    work = RunLayout(run_dir).training / "hyperpod"
    work.mkdir(parents=True, exist_ok=True)
    (work / plan.recipe_file).write_text(plan.recipe_yaml)
    target = collection_dir() / f"{plan.recipe_name}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(plan.recipe_yaml)
    return work


def list_jobs(namespace: str) -> list[dict[str, Any]]:
    """`hyperpod list-jobs -n <ns>` parsed: [{"Name", "Namespace", "CreationTime", "State", ...}]."""
    out = run_cli([CLI, "list-jobs", "--namespace", namespace], "listing HyperPod jobs")
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        raise UserError(f"`hyperpod list-jobs` printed something that is not JSON:\n{out[:500]}") from None
    return list(data.get("jobs", []))


def submit(plan: HyperPodPlan, run_dir: str | os.PathLike, session: Any = None) -> JobHandle:
    """Upload, deploy the reward if planned, write the recipe, connect to the cluster and start the job (once).

    A job of this plan already on the cluster (`<run name>-<5 characters>`) is attached to, not started again.
    """
    sess, dry = sagemaker.prepare_submission(plan, run_dir, session)
    if dry:
        return dry
    work = write_recipe(plan, run_dir)
    run_cli(plan.request["connect"], f"connecting to HyperPod cluster {plan.cluster_name}", cwd=work)
    started = time.time()
    ours = re.compile(rf"^{re.escape(plan.job_name)}-[a-z0-9]{{5}}$")
    existing = [j["Name"] for j in list_jobs(plan.namespace) if ours.match(str(j.get("Name", "")))]
    if existing:
        print(f"HyperPod job {existing[0]} already exists for this plan: attaching to it")
        name = existing[0]
    else:
        out = run_cli(plan.request["start"], f"starting HyperPod job {plan.job_name}", cwd=work)
        match = _NAME_LINE.search(out)
        if not match:
            raise UserError(
                "`hyperpod start-job` finished without printing `NAME: <job>`; check `hyperpod list-jobs "
                f"--namespace {plan.namespace}` before submitting again (it is not retried). Output:\n{out[-1500:]}"
            )
        name = match[1]
        print(f"started HyperPod job {name}")
    return HyperPodJobHandle(name, run_dir, plan.region, plan.cluster_name, plan.namespace, plan.output_s3_path,
                             submitted_ms=int(started * 1000), kind=plan.kind, session=sess)


# --------------------------------------------------------------------------------------------- handle

_STATES: dict[str, JobStatus] = {
    "created": "pending", "pending": "pending", "queued": "pending", "suspended": "pending",
    "running": "running", "restarting": "running", "succeeded": "completed", "completed": "completed",
    "failed": "failed"}


class HyperPodJobHandle(JobHandle):
    """A HyperPod job: status and cancel through the CLI, logs from CloudWatch, outputs from S3."""

    backend = "hyperpod"

    def __init__(self, job_id: str, run_dir: str | os.PathLike, region: str, cluster_name: str, namespace: str,
                 output_s3_path: str, submitted_ms: int = 0, kind: str = "train", session: Any = None) -> None:
        super().__init__(job_id, run_dir)
        self.region = region
        self.cluster_name = cluster_name
        self.namespace = namespace
        self.output_s3_path = output_s3_path.rstrip("/")
        self.submitted_ms = submitted_ms
        self.kind = kind
        self._session = session

    def client(self, service: str) -> Any:
        return (self._session or aws.session(self.region)).client(service, region_name=self.region)

    def status(self) -> JobStatus:
        """The CLI's State; a job gone from the cluster is completed if its manifest exists, else stopped."""
        for job in list_jobs(self.namespace):
            if job.get("Name") == self.job_id:
                return _STATES.get(str(job.get("State", "")).lower(), "running")
        manifest = f"{self.output_s3_path}/{self.job_id}/manifest.json"
        return "completed" if manifest in aws.list_keys(self.client("s3"), manifest) else "stopped"

    def stop(self) -> None:
        run_cli([CLI, "cancel-job", "--job-name", self.job_id, "--namespace", self.namespace],
                f"cancelling HyperPod job {self.job_id}")

    def log_group(self) -> str:
        """/aws/sagemaker/Clusters/<name>/<id>; the id is the last part of the cluster ARN."""
        with aws.aws_errors(f"describing cluster {self.cluster_name}", "sagemaker:DescribeCluster", self.cluster_name):
            arn = self.client("sagemaker").describe_cluster(ClusterName=self.cluster_name)["ClusterArn"]
        return f"/aws/sagemaker/Clusters/{self.cluster_name}/{arn.rsplit('/', 1)[-1]}"

    def logs(self, tail: int | None = None) -> str:
        """Every node's lines since the job was submitted (node streams are shared by the cluster's jobs)."""
        lines = aws.log_lines_since(self.client("logs"), self.log_group(), self.submitted_ms)
        return "\n".join(lines[-tail:] if tail else lines)

    def outputs(self, dest: str | os.PathLike | None = None) -> Path:
        """Download what the job wrote under s3://<output_s3_path>/<job>/ (manifest.json, metrics CSV, eval
        results); archives among them are extracted safely."""
        dest = Path(dest) if dest else self.default_dest()
        prefix = f"{self.output_s3_path}/{self.job_id}/"
        s3 = self.client("s3")
        keys = aws.list_keys(s3, prefix)
        if not keys:
            raise UserError(f"nothing under {prefix} yet: has job {self.job_id} finished? (status: {self.status()})")
        for uri in keys:
            relative = uri[len(prefix):]
            local = aws.download(s3, uri, _inside(dest, relative))
            if local.name.endswith((".tar.gz", ".tgz")):
                safe_extract(local, local.parent)
        return dest

    def default_dest(self) -> Path:
        """training/output for a training job (the layout every stage reads), training/eval/<job> for rft_eval."""
        training = RunLayout(self.run_dir).training
        return training / "output" if self.kind == "train" else training / "eval" / self.job_id

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "job_id": self.job_id, "region": self.region,
                "cluster_name": self.cluster_name, "namespace": self.namespace,
                "output_s3_path": self.output_s3_path, "submitted_ms": self.submitted_ms, "kind": self.kind}


def _inside(dest: Path, relative: str) -> Path:
    """A local path for an S3 key below the job prefix; keys with `..` or absolute parts are refused."""
    target = (dest / relative).resolve()
    if not str(target).startswith(str(dest.resolve()) + os.sep):
        raise UserError(f"refusing S3 key {relative!r}: it would be written outside {dest}")
    return target


def handle_from_dict(data: dict[str, Any], run_dir: str | os.PathLike) -> HyperPodJobHandle:
    missing = [k for k in ("job_id", "region", "cluster_name", "namespace", "output_s3_path") if k not in data]
    if missing:
        raise UserError(f"HyperPod job record lacks {', '.join(missing)}; re-launch to rewrite training/job.json")
    return HyperPodJobHandle(data["job_id"], run_dir, data["region"], data["cluster_name"], data["namespace"],
                             data["output_s3_path"], data.get("submitted_ms", 0), data.get("kind", "train"))
