"""Hyperparameter editor: the job spec as widgets, with live ranges, derived quantities, Save and Launch.

Why generated from the spec: the ranges of `nbkit.train.spec.RANGES` (per surface) become the sliders'
bounds and the dropdowns' options, and the AwsSettings / LocalSettings forms come from those models'
fields, so a field added to the spec appears here without touching this module.

Values outside a surface's range are never moved silently (a slider would clamp them): the slider's bounds
widen to include the value and the range error is shown inline. Save refuses a spec with errors, writes
only the 04_launch_training section of the params file (other sections, keys and comments stay as they
were) and replaces the file atomically. Launch is a dry run unless the "dry run" box is unticked.

Everything works without a browser: set `.value` on the widgets, call `.click()` on the buttons.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import tempfile
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ValidationError

from nbkit import params as params_mod
from nbkit.errors import UserError
from nbkit.train import derived as derived_mod
from nbkit.train.spec import (
    BACKENDS,
    SURFACE_TITLES,
    AwsSettings,
    Hyperparameters,
    Issue,
    JobSpec,
    LocalSettings,
    Range,
    from_dict,
    from_params,
    ranges,
    surface_of,
)
from nbkit.train.stage import prepare_spec

if TYPE_CHECKING:
    from nbkit.train.job import JobHandle

SECTION = "04_launch_training"
TOP_FIELDS = ("name", "model", "reward", "train_data", "eval_data", "output")
# Sliders only where the range is narrow enough to drag through; wide integer ranges get a text box.
MAX_INT_SLIDER_SPAN = 4096
FLOAT_SLIDER_STEPS = {"temperature": 0.05, "weight_decay": 0.01, "loraplus_lr_ratio": 0.5}


def _widgets() -> Any:
    import ipywidgets

    return ipywidgets


# ------------------------------------------------------------------------------------- field widgets


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed) of a field annotation such as `int | None`."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), True
    return annotation, False


def _literal_options(annotation: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    return None


def _label(value: Any) -> str:
    return "off (null)" if value is None else str(value)


def hyper_widget(name: str, value: Any, rng: Range | None) -> Any:
    """One hyperparameter's widget: dropdown for choices, (log-)slider for a narrow range, text otherwise."""
    w = _widgets()
    field = Hyperparameters.model_fields[name]
    kind, nullable = _base_type(field.annotation)
    common = {"description": name, "style": {"description_width": "150px"}, "tooltip": field.description or ""}
    choices = (rng.choices if rng and rng.choices is not None else None) or _literal_options(kind)
    if choices is not None:
        options = list(choices) + ([None] if nullable and None not in choices else [])
        if value not in options:
            options.append(value)  # keep the user's value visible; the range error says why it is wrong
        widget = w.Dropdown(options=[(_label(o), o) for o in options], value=value, **common)
    elif name == "max_steps":
        widget = w.IntText(value=0 if value is None else value, **common)
    elif rng and rng.lo is not None and rng.hi is not None and kind is float and rng.log and rng.lo > 0:
        lo, hi = math.log10(rng.lo), math.log10(rng.hi)
        if value is not None and value > 0:
            lo, hi = min(lo, math.floor(math.log10(value))), max(hi, math.ceil(math.log10(value)))
        widget = w.FloatLogSlider(value=value, base=10, min=lo, max=hi, step=0.1, readout_format=".1e", **common)
    elif rng and rng.lo is not None and rng.hi is not None and kind is int and rng.hi - rng.lo <= MAX_INT_SLIDER_SPAN:
        widget = w.IntSlider(value=value, min=int(min(rng.lo, value)), max=int(max(rng.hi, value)), **common)
    elif rng and rng.lo is not None and rng.hi is not None and kind is float and name in FLOAT_SLIDER_STEPS:
        widget = w.FloatSlider(value=value, min=min(rng.lo, value), max=max(rng.hi, value),
                               step=FLOAT_SLIDER_STEPS[name], **common)
    elif kind is int:
        widget = w.IntText(value=value, **common)
    else:
        widget = w.FloatText(value=value, **common)
    if rng is not None and not rng.exposed:
        widget.disabled = True
    return widget


def hyper_value(name: str, widget: Any) -> Any:
    """Read a hyperparameter back from its widget (max_steps 0 means "from epochs")."""
    value = widget.value
    if name == "max_steps":
        return None if not value else int(value)
    return value


def settings_widget(model: type[BaseModel], name: str, value: Any) -> Any:
    """A widget for one AwsSettings / LocalSettings field, from its annotation."""
    w = _widgets()
    field = model.model_fields[name]
    kind, nullable = _base_type(field.annotation)
    common = {"description": name, "style": {"description_width": "170px"}, "tooltip": field.description or "",
              "layout": {"width": "560px"}}
    options = _literal_options(kind)
    if kind is bool:
        return w.Checkbox(value=bool(value), indent=False, **{k: v for k, v in common.items() if k != "layout"})
    if options is not None:
        return w.Dropdown(options=list(options), value=value, **common)
    if kind is int:
        return w.IntText(value=0 if value is None else value, **common)  # 0 = None (the surface default)
    if kind is float:
        return w.FloatText(value=0.0 if value is None else value, **common)
    if typing.get_origin(kind) is dict or kind is dict:
        return w.Textarea(value=json.dumps(value or {}), **common)
    del nullable
    return w.Text(value="" if value is None else str(value), **common)


def settings_value(model: type[BaseModel], name: str, widget: Any) -> Any:
    field = model.model_fields[name]
    kind, nullable = _base_type(field.annotation)
    value = widget.value
    if kind in (int, float) and nullable and not value:
        return None
    if typing.get_origin(kind) is dict or kind is dict:
        try:
            return json.loads(value or "{}")
        except ValueError as exc:
            raise UserError(f"{model.__name__}.{name}: not valid JSON ({exc}); write e.g. {{\"team\": \"nlp\"}}") from None
    return value


# ------------------------------------------------------------------------------------------- editor


class TrainingEditor:
    """The job spec as a form: change values, see ranges, errors, derived quantities and cost at once.

    `params_file` is where Save writes the 04_launch_training section; `run_dir` is where Launch records
    `training/job.json`; `n_train` (default: counted from the spec's train_data) sizes the estimates;
    Save writes backend, dry_run and every hyperparameter explicitly (so the file says which values it
    uses) plus any other field the form changed from `spec`; `base_values` are the notebook parameters the
    spec came from (kept for reference).
    """

    def __init__(self, spec: JobSpec, params_file: str | os.PathLike | None = None,
                 run_dir: str | os.PathLike | None = None, n_train: int | None = None,
                 prices: str | os.PathLike | dict | None = None, reward_latency_s: float | None = None,
                 base_values: dict[str, Any] | None = None) -> None:
        w = _widgets()
        self.params_file = Path(params_file) if params_file else None
        self.run_dir = run_dir
        self.n_train = n_train if n_train is not None else derived_mod.count_records(spec.train_data)
        self.prices = prices
        self.reward_latency_s = reward_latency_s
        self.base_values = dict(base_values or {})
        self.last_handle: JobHandle | None = None
        self._building = False
        self._surface = spec.surface
        self._initial = spec

        self.backend = w.Dropdown(options=list(BACKENDS), value=spec.backend, description="backend")
        self.dry_run = w.Checkbox(value=spec.dry_run, description="dry run (plan only, submit nothing)", indent=False)
        self.top = {n: w.Text(value=getattr(spec, n), description=n, layout={"width": "560px"},
                              style={"description_width": "150px"}) for n in TOP_FIELDS}
        self.hyper: dict[str, Any] = {}
        self.range_labels: dict[str, Any] = {}
        self.hyper_box = w.VBox()
        self.aws = {n: settings_widget(AwsSettings, n, getattr(spec.aws, n)) for n in AwsSettings.model_fields}
        self.local = {n: settings_widget(LocalSettings, n, getattr(spec.local, n)) for n in LocalSettings.model_fields}
        self.issues_html = w.HTML()
        self.derived_html = w.HTML()
        self.status_html = w.HTML()
        self.save_button = w.Button(description="Save", icon="save", tooltip="write the 04 section of the params file")
        self.launch_button = w.Button(description="Launch", icon="rocket", button_style="warning")
        self.output = w.Output()
        self.save_button.on_click(lambda _b: self._guard(self.save))
        self.launch_button.on_click(lambda _b: self._guard(self.launch))

        self._build_hyper(spec.hyper)
        for widget in [self.backend, self.dry_run, *self.top.values(), *self.aws.values(), *self.local.values()]:
            widget.observe(self._changed, names="value")
        settings = w.Accordion(children=[w.VBox(list(self.aws.values())), w.VBox(list(self.local.values()))])
        settings.set_title(0, "AWS settings (sagemaker, hyperpod, bedrock)")
        settings.set_title(1, "local settings")
        settings.selected_index = None
        self.widget = w.VBox([
            w.HBox([self.backend, self.dry_run]),
            w.VBox(list(self.top.values())),
            w.HTML("<b>hyperparameters</b> (allowed range on the chosen surface at the right)"),
            self.hyper_box,
            settings,
            self.issues_html,
            w.HTML("<b>derived quantities</b>"),
            self.derived_html,
            w.HBox([self.save_button, self.launch_button]),
            self.status_html,
            self.output,
        ])
        self.refresh()

    # ---------------------------------------------------------------- building

    def _build_hyper(self, hyper: Hyperparameters) -> None:
        """(Re)build the hyperparameter widgets for the current surface's ranges, keeping the values."""
        w = _widgets()
        self._building = True
        try:
            table = ranges(self._surface)
            rows = []
            for name in Hyperparameters.model_fields:
                rng = table.get(name)
                widget = hyper_widget(name, getattr(hyper, name), rng)
                widget.observe(self._changed, names="value")
                label = w.HTML(self._range_text(name, rng))
                self.hyper[name], self.range_labels[name] = widget, label
                rows.append(w.HBox([widget, label]))
            self.hyper_box.children = rows
        finally:
            self._building = False

    def _range_text(self, name: str, rng: Range | None) -> str:
        extra = "0 = from epochs and data size; " if name == "max_steps" else ""
        if rng is None:
            return f"<small>{extra}no documented range</small>"
        if not rng.exposed:
            return f"<small>not used here: {html.escape(rng.note)}</small>"
        note = f"; {html.escape(rng.note)}" if rng.note else ""
        return f"<small>{extra}allowed: {html.escape(rng.describe())}{note}</small>"

    # ---------------------------------------------------------------- reading the form

    def values(self) -> dict[str, Any]:
        """The form as plain data in JobSpec's shape (not validated)."""
        data: dict[str, Any] = {"backend": self.backend.value, "dry_run": self.dry_run.value}
        data.update({n: wid.value for n, wid in self.top.items()})
        data["hyper"] = {n: hyper_value(n, wid) for n, wid in self.hyper.items()}
        data["aws"] = {n: settings_value(AwsSettings, n, wid) for n, wid in self.aws.items()}
        data["local"] = {n: settings_value(LocalSettings, n, wid) for n, wid in self.local.items()}
        return data

    def spec(self) -> JobSpec:
        """The form as a JobSpec; raises UserError naming each field a widget holds a bad value for."""
        return from_dict(self.values(), "training editor values")

    @property
    def issues(self) -> list[Issue]:
        try:
            return self.spec().check()
        except UserError as exc:
            return [Issue("form", "", str(exc))]

    @property
    def derived(self) -> derived_mod.Derived | None:
        """Derived quantities of the current form, or None when it does not make a spec or the size is unknown."""
        if self.n_train is None:
            return None
        try:
            spec = self.spec()
        except UserError:
            return None
        return derived_mod.compute(spec, self.n_train, self.prices, reward_latency_s=self.reward_latency_s)

    # ---------------------------------------------------------------- reacting

    def _changed(self, change: dict[str, Any]) -> None:
        if self._building:
            return
        surface = self._current_surface()
        if surface != self._surface:
            self._surface = surface
            try:
                hyper = Hyperparameters(**{n: hyper_value(n, wid) for n, wid in self.hyper.items()})
            except ValidationError:
                hyper = self._initial.hyper
            self._build_hyper(hyper)
        self.refresh()

    def _current_surface(self) -> str:
        rank = self.hyper["lora_rank"].value if "lora_rank" in self.hyper else self._initial.hyper.lora_rank
        return surface_of(self.backend.value, rank)

    def refresh(self) -> None:
        """Recompute the issues and the derived quantities shown under the form."""
        issues = self.issues
        self.issues_html.value = _issues_html(issues, self._surface)
        if self.n_train is None:
            self.derived_html.value = ("<i>training data size unknown (no local train_data file): pass n_train= "
                                       "to see steps, rollouts and cost</i>")
            return
        d = self.derived
        self.derived_html.value = "<i>fix the errors above to see the derived quantities</i>" if d is None else _derived_html(d)

    def _guard(self, action: Any) -> None:
        """Button callbacks: show a user error in the status line instead of a traceback in the log."""
        try:
            action()
        except UserError as exc:
            self.status_html.value = f"<pre style='color:#b00'>{html.escape(str(exc))}</pre>"

    # ---------------------------------------------------------------- actions

    def section_values(self) -> dict[str, Any]:
        """What Save writes: backend, dry_run, every hyperparameter, and whatever else the form changed."""
        spec = self.spec()
        out: dict[str, Any] = {"backend": spec.backend, "dry_run": spec.dry_run}
        for name in TOP_FIELDS:  # shared or run-derived values are written only when the form changed them
            value = getattr(spec, name)
            if value != getattr(self._initial, name):
                out[name] = value
        hyper = spec.hyper.model_dump(mode="json")
        if hyper.pop("seed") != self._initial.hyper.seed:
            out["seed"] = spec.hyper.seed
        hyper["max_steps"] = hyper["max_steps"] or 0
        out.update(hyper)
        for key, model in (("aws", AwsSettings), ("local", LocalSettings)):
            current = getattr(spec, key)
            if current != getattr(self._initial, key):
                out[key] = {k: v for k, v in current.model_dump(mode="json").items()
                            if v != model.model_fields[k].get_default(call_default_factory=True)}
        return out

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the form into the params file's 04 section (atomically); refuses a spec with errors."""
        target = Path(path) if path else self.params_file
        if target is None:
            raise UserError("no params file to save into: pass params_file= to the editor (e.g. params/demo.yaml)")
        errors = [i for i in self.issues if i.severity == "error"]
        if errors:
            raise UserError("not saved, the spec has errors:\n" + "\n".join(f"  - {e}" for e in errors))
        values = self.section_values()
        save_section(target, SECTION, values)
        self.status_html.value = f"saved {len(values)} keys into <code>{html.escape(str(target))}</code> ({SECTION})"
        return target

    def launch(self) -> Any:
        """Plan (and, with dry run unticked, submit) the form's spec; records training/job.json."""
        if self.run_dir is None:
            raise UserError("no run folder to launch into: pass run_dir= to the editor")
        spec = self.spec()
        handle = prepare_spec(spec, self.run_dir).start(wait=False).handle  # the notebook's chain, not waiting
        self.last_handle = handle
        mode = "planned (dry run)" if spec.dry_run else "submitted"
        self.status_html.value = (f"{mode}: {html.escape(handle.backend)} job <code>{html.escape(handle.job_id)}"
                                  "</code>; record in training/job.json")
        with self.output:
            self.output.clear_output()
            print(handle.logs() if spec.dry_run else repr(handle))
        return handle

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def editor(spec: JobSpec | None = None, *, params: Any = None, params_file: str | os.PathLike | None = None,
           run_dir: str | os.PathLike | None = None, **kwargs: Any) -> TrainingEditor:
    """The editor for a spec, for a notebook's parameters (`params=P`), or for a params file's 04 section.

    With `params_file` and no spec/params, the file's 04_launch_training section (plus its shared keys)
    is the starting point, so Save round-trips the file.
    """
    if spec is not None and params is not None:
        raise UserError("give the editor either a spec or params, not both")
    values: dict[str, Any] | None = None
    if params is not None:
        values = params.model_dump() if hasattr(params, "model_dump") else dict(params)
    elif spec is None and params_file is not None:
        raw = params_mod.load_file(params_file).get(SECTION, {}) if Path(params_file).exists() else {}
        values = dict(raw)
    if values is not None:  # the notebook's defaults and checks, exactly as a pipeline run would apply them
        values = params_mod.validate(SECTION, values, source=str(params_file or "")).model_dump()
        run_dir = run_dir if run_dir is not None else values.get("run_dir") or None
    if spec is None:
        spec = from_params(values or {}, run_dir=str(run_dir) if run_dir is not None else None)
    return TrainingEditor(spec, params_file=params_file, run_dir=run_dir, base_values=values, **kwargs)


def _issues_html(issues: list[Issue], surface: str) -> str:
    if not issues:
        return f"<span style='color:#070'>&#10003; valid for {html.escape(SURFACE_TITLES.get(surface, surface))}</span>"
    items = []
    for issue in issues:
        color = "#b00" if issue.severity == "error" else "#a60"
        items.append(f"<li style='color:{color}'><b>{issue.severity}</b> {html.escape(str(issue))}</li>")
    return "<ul style='margin:0'>" + "".join(items) + "</ul>"


def _derived_html(d: derived_mod.Derived) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(a)}</td><td style='text-align:right'><b>{html.escape(b)}</b></td>"
        f"<td><small>{html.escape(c)}</small></td></tr>" for a, b, c in d.rows()
    )
    notes = "".join(f"<li>{html.escape(a)}</li>" for a in d.assumptions)
    warns = "".join(f"<li style='color:#a60'>{html.escape(x)}</li>" for x in d.warnings)
    return (f"<table>{rows}</table><small>assumptions:<ul style='margin:0'>{notes}</ul></small>"
            + (f"<ul style='margin:0'>{warns}</ul>" if warns else ""))


# -------------------------------------------------------------------------------- params file editing


def save_section(path: str | os.PathLike, section: str, values: dict[str, Any]) -> Path:
    """Set `values` in one section of a YAML params file, keeping everything else (comments included).

    Keys of the section not in `values` stay. The edit is textual (so comments survive), then checked by
    parsing the result: the section must read back as intended and every other key unchanged; if the
    text edit cannot guarantee that, the whole file is rewritten as plain YAML (comments lost) instead.
    The file is replaced atomically (temp file + os.replace).
    """
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    try:
        old = yaml.safe_load(text) or {} if text else {}
    except yaml.YAMLError as exc:
        raise UserError(f"params file {path} is not valid YAML ({exc}); fix it before saving into it") from None
    if not isinstance(old, dict):
        raise UserError(f"params file {path} must be a mapping of names to values")
    current = old.get(section) or {}
    if not isinstance(current, dict):
        raise UserError(f"{path}: section {section!r} must be a mapping")
    wanted = {**old, section: {**current, **values}}
    new_text = _edit_section_text(text, section, values)
    try:
        ok = yaml.safe_load(new_text) == wanted
    except yaml.YAMLError:
        ok = False
    if not ok:
        new_text = yaml.safe_dump(wanted, sort_keys=False, default_flow_style=False)
    _write_atomic(path, new_text)
    return path


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _scalar(value: Any) -> str:
    """One YAML value on one line (flow style for mappings), readable back by YAML 1.1."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False)
    return text.removesuffix("\n...\n").strip()


_TOP_KEY = re.compile(r"^(?P<key>[^\s#][^:]*):(?P<rest>.*)$")


def _edit_section_text(text: str, section: str, values: dict[str, Any]) -> str:
    """Replace or append `values` inside the section's block, leaving every other line as it is."""
    lines = text.splitlines()
    found = next(((i, m) for i, ln in enumerate(lines) if (m := _TOP_KEY.match(ln)) and m["key"].strip() == section),
                 None)
    if found is None:
        body = [f"{section}:"] + [f"  {k}: {_scalar(v)}" for k, v in values.items()]
        sep = [""] if lines and lines[-1].strip() else []
        return "\n".join(lines + sep + body) + "\n"
    start, head = found
    end = next((i for i in range(start + 1, len(lines)) if _TOP_KEY.match(lines[i])), len(lines))
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")) \
            and not lines[end - 1].startswith(" "):
        end -= 1  # comments and blank lines at column 0 before the next section belong to it
    head_rest = head["rest"].split("#")[0].strip()
    block = lines[start + 1:end]
    if head_rest:  # flow style (`04_launch_training: {}`): rewrite the section as a block
        merged = {**(yaml.safe_load(head_rest) or {}), **values}
        new_block = [f"{section}:"] + [f"  {k}: {_scalar(v)}" for k, v in merged.items()]
        return "\n".join(lines[:start] + new_block + lines[end:]) + "\n"
    indent = next((len(ln) - len(ln.lstrip()) for ln in block if ln.strip() and not ln.lstrip().startswith("#")), 2)
    block = _set_keys(block, indent, values)
    return "\n".join(lines[:start + 1] + block + lines[end:]) + "\n"


def _set_keys(block: list[str], indent: int, values: dict[str, Any]) -> list[str]:
    """Within a section block: rewrite each key's value in place (keeping its comment), append new keys."""
    pad = " " * indent
    key_re = re.compile(rf"^{pad}(?P<key>[A-Za-z_][\w.-]*):(?P<rest>.*)$")
    out, seen, i = [], set(), 0
    while i < len(block):
        m = key_re.match(block[i])
        if not m or m["key"] not in values:
            out.append(block[i])
            i += 1
            continue
        key = m["key"]
        seen.add(key)
        comment = _trailing_comment(m["rest"])
        j = i + 1  # skip the old value's continuation lines (a nested block under the key)
        while j < len(block) and (not block[j].strip() or len(block[j]) - len(block[j].lstrip()) > indent):
            j += 1
        while j > i + 1 and not block[j - 1].strip():
            j -= 1
        out.append(f"{pad}{key}: {_scalar(values[key])}" + (f"  {comment}" if comment else ""))
        i = j
    last = len(out)
    while last > 0 and not out[last - 1].strip():
        last -= 1
    extra = [f"{pad}{k}: {_scalar(v)}" for k, v in values.items() if k not in seen]
    return out[:last] + extra + out[last:]


def _trailing_comment(rest: str) -> str:
    """The `# ...` comment after a value, if the value itself is a plain scalar (no quotes to confuse)."""
    if "'" in rest or '"' in rest:
        return ""
    idx = rest.find(" #")
    return rest[idx + 1:].strip() if idx >= 0 else ""
