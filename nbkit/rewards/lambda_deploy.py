"""Package a reward for AWS Lambda and deploy or update it; a `lambda:<function>` spec calls the deployed
function through the harness (`remote_reward` in nbkit.rewards.loader).

The zip holds the reward file at its root plus the local modules it imports (found by reading its imports,
recursively); a built-in grader is its generated stand-alone file. boto3 is imported only when deploying
or invoking. Facts from reference/nova-rft.md: runtime python3.12, timeout raised from the 3 s default
(AWS samples use 300 s / 512 MB), HyperPod only calls functions whose name contains "SageMaker".
"""

from __future__ import annotations

import ast
import io
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbkit.errors import UserError
from nbkit.rewards.loader import GENERATED_MODULE, Reward, lambda_client, load_reward

RUNTIME = "python3.12"
TARGETS = ("sagemaker", "hyperpod", "bedrock")
IN_LAMBDA_RUNTIME = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six",
                               "awslambdaric", "bootstrap"})
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ROLE = re.compile(r"^arn:aws[a-zA-Z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass
class PackagePlan:
    """What goes into the zip: archive name -> file, the Lambda handler string, and imports left out."""

    handler: str
    files: dict[str, Path] = field(default_factory=dict)
    third_party: list[str] = field(default_factory=list)
    generated: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"handler": self.handler, "files": sorted([*self.files, *self.generated]),
                "third_party": self.third_party}


def _imports(path: Path) -> list[tuple[str, int]]:
    """(module, level) of every import in a file, including those inside functions."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as exc:
        raise UserError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
            if node.module is None:  # from . import helpers
                found.extend((alias.name, node.level) for alias in node.names)
    return found


def _local_target(root: Path, dotted: str) -> list[Path]:
    """Files that a dotted import resolves to under `root`: a module file, or every .py of a package."""
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        return []
    top = root / parts[0]
    if (root / f"{parts[0]}.py").is_file():
        return [root / f"{parts[0]}.py"]
    if top.is_dir() and any(top.rglob("*.py")):
        return sorted(p for p in top.rglob("*.py") if "__pycache__" not in p.parts)
    return []


def plan_package(reward: Reward) -> PackagePlan:
    """Decide the zip's contents without writing it (shown in the notebook, tested offline)."""
    source = reward.source
    if source is None:
        if reward.grader is not None:
            raise UserError(f"reward {reward.name!r} uses a model-based grader (LLM judge), which cannot run "
                            "inside Lambda; deploy a reward file that calls Bedrock instead")
        raise UserError(f"reward {reward.name!r} has no source file to package (it was built from a Python "
                        "object); write it as a .py file with lambda_handler(event, context)")
    source = Path(source)
    if reward.grader is not None:  # generated file (the graders + an entry point): standard library only
        plan = PackagePlan(f"{GENERATED_MODULE}.{reward.function}", {f"{GENERATED_MODULE}.py": source})
        _vendor_nbkit(plan, "nbkit.plain", set())
        return plan
    root = source.parent
    plan = PackagePlan(f"{source.stem}.{reward.function}", {source.name: source})
    queue, seen = [source], {source}
    third: set[str] = set()
    while queue:
        current = queue.pop()
        for module, level in _imports(current):
            top = module.split(".")[0]
            if top == "nbkit":
                _vendor_nbkit(plan, module, third)
                continue
            targets = _local_target(current.parent if level else root, module) or _local_target(root, module)
            for target in targets:
                plan.files.setdefault(target.relative_to(root).as_posix(), target)
                if target not in seen:
                    seen.add(target)
                    queue.append(target)
            if not targets and level == 0 and top and top not in sys.stdlib_module_names \
                    and top not in IN_LAMBDA_RUNTIME:
                third.add(top)
    plan.third_party = sorted(third)
    return plan


def _vendor_nbkit(plan: PackagePlan, module: str, third: set[str]) -> None:
    """A reward file may build on the built-in graders and the plain-data helpers they use: both modules
    are standard-library only, so they are copied into the zip; any other part of nbkit needs packages
    Lambda lacks."""
    from nbkit import plain
    from nbkit.rewards import graders

    if module in ("nbkit.rewards.graders", "nbkit.rewards", "nbkit.plain"):
        plan.files["nbkit/plain.py"] = Path(plain.__file__)
        plan.generated.setdefault("nbkit/__init__.py", "")
        if module != "nbkit.plain":
            plan.files["nbkit/rewards/graders.py"] = Path(graders.__file__)
            plan.generated.setdefault("nbkit/rewards/__init__.py", "")
    else:
        third.add(module)


def _zip_bytes(plan: PackagePlan) -> bytes:
    """Deterministic zip (fixed dates, sorted names): same code, same bytes, same CodeSha256."""
    buffer = io.BytesIO()
    entries = {name: path.read_bytes() for name, path in plan.files.items()}
    entries.update({name: text.encode() for name, text in plan.generated.items()})
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name])
    return buffer.getvalue()


def package_reward(reward: Any, dest: str | Path) -> Path:
    """Write the reward's Lambda zip to `dest` (a .zip path, or a folder that gets lambda.zip); return it.

    Third-party imports cannot be vendored from here: they are listed in a warning (use a Lambda layer).
    """
    import warnings

    reward = load_reward(reward)
    plan = plan_package(reward)
    dest = Path(dest)
    path = dest if dest.suffix == ".zip" else dest / "lambda.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_zip_bytes(plan))
    if plan.third_party:
        warnings.warn(f"{reward.name}: imports {', '.join(plan.third_party)} are not in the zip and not in the "
                      "Lambda runtime: add them with a Lambda layer", stacklevel=2)
    return path


def check_deploy_args(function_name: str, role_arn: str, target: str, timeout_s: int, memory_mb: int) -> None:
    """Everything checkable before calling AWS, with the fix in the message."""
    if target not in TARGETS:
        raise UserError(f"target must be one of {TARGETS}, got {target!r}")
    if not _NAME.match(function_name or ""):
        raise UserError(f"Lambda function name {function_name!r} is invalid: 1-64 letters, digits, '-' or '_'")
    if target == "hyperpod" and "sagemaker" not in function_name.lower():
        raise UserError(f"HyperPod only invokes reward functions whose name contains 'SageMaker' "
                        f"(case-insensitive); {function_name!r} does not. Rename it, e.g. 'SageMaker-{function_name}'")
    if not _ROLE.match(role_arn or ""):
        raise UserError(f"role_arn {role_arn!r} is not an IAM role ARN (arn:aws:iam::<12 digits>:role/<name>); "
                        "the Lambda execution role needs at least AWSLambdaBasicExecutionRole")
    if not 1 <= int(timeout_s) <= 900:
        raise UserError(f"timeout_s must be 1..900 (Lambda's 15 min limit), got {timeout_s}; rewards should "
                        "finish in seconds, and the 3 s default is too short for most")
    if not 128 <= int(memory_mb) <= 10240:
        raise UserError(f"memory_mb must be 128..10240, got {memory_mb}")


def _aws_error(exc: Exception, action: str, function_name: str) -> UserError:
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

    if isinstance(exc, NoCredentialsError):
        return UserError(f"cannot {action} {function_name}: no AWS credentials found (configure the standard "
                         "chain: AWS_PROFILE, aws configure or an instance role)")
    if isinstance(exc, NoRegionError):
        return UserError(f"cannot {action} {function_name}: no AWS region; pass region=... or set AWS_REGION")
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        hint = {
            "AccessDeniedException": "the caller needs lambda:CreateFunction/UpdateFunctionCode/"
                                     "UpdateFunctionConfiguration and iam:PassRole on the role",
            "InvalidParameterValueException": "check the role (it must trust lambda.amazonaws.com; a new role "
                                              "can take a few seconds to be usable) and the handler/runtime",
        }.get(code, "see the AWS message")
        return UserError(f"cannot {action} {function_name}: {code}: {exc.response.get('Error', {}).get('Message')} "
                         f"({hint})")
    return UserError(f"cannot {action} {function_name}: {type(exc).__name__}: {exc}")


def deploy_reward(reward: Any, function_name: str, role_arn: str, region: str | None = None,
                  target: str = "sagemaker", timeout_s: int = 300, memory_mb: int = 512,
                  client: Any = None) -> str:
    """Create the reward's Lambda function, or update its code and configuration; return the function ARN.

    The caller's role (SageMaker execution role or Bedrock service role) still needs lambda:InvokeFunction
    on the returned ARN.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    reward = load_reward(reward)
    check_deploy_args(function_name, role_arn, target, timeout_s, memory_mb)
    plan = plan_package(reward)
    code = _zip_bytes(plan)
    settings = {"Runtime": RUNTIME, "Handler": plan.handler, "Timeout": int(timeout_s), "MemorySize": int(memory_mb),
                "Role": role_arn, "Description": f"RFT reward {reward.name} (nbkit, target {target})"[:256]}
    action = "deploy"
    try:
        lam = lambda_client(client, region)
        try:
            lam.get_function(FunctionName=function_name)
            action = "update"
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
        if action == "update":
            lam.update_function_code(FunctionName=function_name, ZipFile=code)
            lam.get_waiter("function_updated_v2").wait(FunctionName=function_name)
            response = lam.update_function_configuration(FunctionName=function_name, **settings)
            lam.get_waiter("function_updated_v2").wait(FunctionName=function_name)
        else:
            response = lam.create_function(FunctionName=function_name, Code={"ZipFile": code},
                                           Tags={"nbkit:reward": reward.name[:256]}, **settings)
            lam.get_waiter("function_active_v2").wait(FunctionName=function_name)
    except (ClientError, BotoCoreError) as exc:
        raise _aws_error(exc, action, function_name) from None
    return response["FunctionArn"]
