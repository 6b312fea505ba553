"""Hyperparameter editor: the job spec as widgets, with live ranges, derived quantities, Save and Launch.

Why generated from the spec: the ranges of `nbkit.train.spec.RANGES` (per surface) become the sliders'
bounds and the dropdowns' options, and the AwsSettings / LocalSettings forms come from those models'
fields, so a field added to the spec appears here without touching this module.

What the editor promises:
- It starts from what Save will write into: the params file's 04_launch_training section when the file
  has one, else the notebook's parameters, with defaults resolved exactly as notebook 04's spec table
  resolves them (same run folder, same preset).
- A value is never moved silently: a slider comes with a text box that holds the value; a typed value
  outside the slider's range is kept (the slider widens to show it) and flagged next to the field, and a
  dragged value is rounded to the precision the box shows, which is what Save writes.
- Errors appear next to their field, which is outlined; the derived quantities and the cost are hidden
  while the spec has errors; a mark says which keys differ from the file since the last Save.
- Save merges only the keys that changed into the file (ruamel.yaml round trip: comments, order and
  every other key stay as they were), checks the result reads back as intended, and replaces the file
  atomically. Launch plans the job (a dry run unless the "dry run" box is unticked).

Everything works without a browser: set `.value` on the widgets, call `.click()` on the buttons.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import traitlets
import yaml
from pydantic import BaseModel, ValidationError

from nbkit import params as params_mod
from nbkit.errors import UserError
from nbkit.sweep.grid import add_point
from nbkit.train import calibration
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
    from_params,
    ranges,
    surface_defaults,
    surface_of,
)
from nbkit.train.stage import prepare_spec, size_unknown

if TYPE_CHECKING:
    from nbkit.train.job import JobHandle

SECTION = "04_launch_training"
TOP_FIELDS = ("name", "model", "reward", "train_data", "eval_data", "output")
# Sliders only where the range is narrow enough to drag through; wide integer ranges get a text box.
MAX_INT_SLIDER_SPAN = 4096
FLOAT_SLIDER_STEPS = {"temperature": 0.05, "weight_decay": 0.01, "loraplus_lr_ratio": 0.5}
LOG_STEP = 0.001  # log10 units: fine enough that a typed value stays what was typed at 3 significant digits
SHOWN_DIGITS = 3  # significant digits a log slider's value is shown (and saved) with
# Values worth offering where a slider would make a small drag a big jump (GRPO group sizes, LoRA sizes).
CHOICES = {
    "number_generation": (2, 4, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64, 96, 128),
    "lora_rank": (0, 4, 8, 16, 32, 64, 128, 256),
    "lora_alpha": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
}
ERROR_BORDER = "2px solid #cf222e"
WARNING_BORDER = "2px solid #bf8700"


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


def shown(value: float, digits: int = SHOWN_DIGITS) -> float:
    """A float at the precision the editor shows it (what Save writes): 0.0005011872 -> 0.000501."""
    return float(f"{value:.{digits}g}") if value and math.isfinite(value) else value


class SliderField(traitlets.HasTraits):
    """A slider and a text box for one number; `.value` is the text box's, `.widget` the pair.

    Drag for a rough value (rounded to what the box shows), type an exact one: a typed value outside the
    slider's bounds is kept and the slider widens to show it (the range check flags it), never clamped.
    """

    value = traitlets.Any(allow_none=True)

    def __init__(self, slider: Any, text: Any, log: bool = False) -> None:
        super().__init__()
        w = _widgets()
        self.slider, self.text, self.log = slider, text, log
        self.widget = w.HBox([slider, text])
        self.layout = self.widget.layout
        self._busy = False
        self.value = text.value
        slider.observe(self._dragged, names="value")
        text.observe(self._typed, names="value")
        self.observe(self._set, names="value")

    @property
    def disabled(self) -> bool:
        return bool(self.text.disabled)

    @disabled.setter
    def disabled(self, value: bool) -> None:
        self.slider.disabled = self.text.disabled = value

    def _dragged(self, change: dict[str, Any]) -> None:
        if self._busy:
            return
        value = shown(change["new"]) if self.log or isinstance(change["new"], float) else change["new"]
        self._show(value, move_slider=False)

    def _typed(self, change: dict[str, Any]) -> None:
        if not self._busy:
            self._show(change["new"], move_text=False)

    def _set(self, change: dict[str, Any]) -> None:
        if not self._busy:
            self._show(change["new"], set_value=False)

    def _show(self, value: Any, move_slider: bool = True, move_text: bool = True, set_value: bool = True) -> None:
        self._busy = True
        try:
            if move_text:
                self.text.value = value
            if move_slider and value is not None:
                self._widen(value)
                self.slider.value = value
            if set_value:
                self.value = value
        finally:
            self._busy = False

    def _widen(self, value: float) -> None:
        """Stretch the slider's bounds to hold `value` (a log slider's bounds are powers of ten)."""
        s = self.slider
        if self.log:
            if value > 0:
                s.min = min(s.min, math.floor(math.log10(value)))
                s.max = max(s.max, math.ceil(math.log10(value)))
        else:
            s.min, s.max = min(s.min, value), max(s.max, value)


def _text_box(kind: type, value: Any) -> Any:
    w = _widgets()
    cls = w.IntText if kind is int else w.FloatText
    return cls(value=value, layout={"width": "110px"})


def _dropdown(name: str, options: list[Any], value: Any, common: dict[str, Any]) -> Any:
    w = _widgets()
    if value not in options:
        options.append(value)  # keep the user's value visible; the range check says why it is wrong
    return w.Dropdown(options=[(_label(o), o) for o in options], value=value, **common)


def hyper_widget(name: str, value: Any, rng: Range | None, number_generation: int | None = None) -> Any:
    """One hyperparameter's widget: a dropdown for choices and group/LoRA sizes, a (log-)slider with a text
    box for a narrow range, a text box otherwise. `number_generation` sets global_batch_size's slider step
    (the batch must be a multiple of it)."""
    w = _widgets()
    field = Hyperparameters.model_fields[name]
    kind, nullable = _base_type(field.annotation)
    common = {"description": name, "style": {"description_width": "150px"}, "tooltip": field.description or ""}
    choices = (rng.choices if rng and rng.choices is not None else None) or _literal_options(kind)
    lo, hi = (rng.lo, rng.hi) if rng else (None, None)
    if choices is not None:
        options = list(choices) + ([None] if nullable and None not in choices else [])
        return _dropdown(name, options, value, common)
    if name in CHOICES and lo is not None and hi is not None:
        return _dropdown(name, [c for c in CHOICES[name] if lo <= c <= hi], value, common)
    if name == "max_steps":
        return w.IntText(value=0 if value is None else value, **common)
    if rng is not None and lo is not None and hi is not None and kind is float and rng.log and lo > 0:
        low, high = math.log10(lo), math.log10(hi)
        if value is not None and value > 0:  # bounds widen to hold the value: a slider never moves it
            low, high = min(low, math.floor(math.log10(value))), max(high, math.ceil(math.log10(value)))
        slider = w.FloatLogSlider(value=value, base=10, min=low, max=high, step=LOG_STEP, readout=False, **common)
        field_widget = SliderField(slider, _text_box(float, value), log=True)
    elif name == "global_batch_size" and lo is not None and hi is not None and number_generation:
        step = number_generation
        first, last = step * max(1, math.ceil(lo / step)), step * max(1, math.floor(hi / step))
        if (last - first) // step > 2048 or first > last:
            return w.IntText(value=value, **common)
        slider = w.IntSlider(value=value, min=min(first, value), max=max(last, value), step=step, readout=False,
                             **common)
        field_widget = SliderField(slider, _text_box(int, value))
    elif lo is not None and hi is not None and kind is int and hi - lo <= MAX_INT_SLIDER_SPAN:
        slider = w.IntSlider(value=value, min=int(min(lo, value)), max=int(max(hi, value)), readout=False, **common)
        field_widget = SliderField(slider, _text_box(int, value))
    elif lo is not None and hi is not None and kind is float and name in FLOAT_SLIDER_STEPS:
        slider = w.FloatSlider(value=value, min=min(lo, value), max=max(hi, value), step=FLOAT_SLIDER_STEPS[name],
                               readout=False, **common)
        field_widget = SliderField(slider, _text_box(float, value))
    elif kind is int:
        return w.IntText(value=value, **common)
    else:
        return w.FloatText(value=value, **common)
    field_widget.slider.style = {"description_width": "150px"}
    return field_widget


def _view(widget: Any) -> Any:
    """What to put in a layout: a SliderField's pair, any other widget itself."""
    return widget.widget if isinstance(widget, SliderField) else widget


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
    kind, _nullable = _base_type(field.annotation)
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
            section = "aws" if model is AwsSettings else "local"
            raise _FieldError(f"{section}.{name}", value,
                              f"not valid JSON ({exc}); write e.g. {{\"team\": \"nlp\"}}") from None
    return value


class _FieldError(ValueError):
    """A form value that cannot even be read (bad JSON): reported next to its field like a range error."""

    def __init__(self, field: str, value: Any, message: str) -> None:
        super().__init__(message)
        self.issue = Issue(field, value, message)


def params_values(spec: JobSpec) -> dict[str, Any]:
    """A spec as the flat values of a 04_launch_training section (what Save compares and writes)."""
    out: dict[str, Any] = {"backend": spec.backend, "dry_run": spec.dry_run}
    out.update({name: getattr(spec, name) for name in TOP_FIELDS})
    hyper = spec.hyper.model_dump(mode="json")
    hyper["max_steps"] = hyper["max_steps"] or 0  # 0 in a params file: from epochs (None takes the preset's)
    out.update(hyper)
    out["aws"] = spec.aws.model_dump(mode="json")
    out["local"] = spec.local.model_dump(mode="json")
    return out


def changed_values(current: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The keys whose value differs; for the aws/local mappings only their changed keys."""
    out: dict[str, Any] = {}
    for key, value in current.items():
        old = base.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            inner = {k: v for k, v in value.items() if old.get(k) != v}
            if inner:
                out[key] = inner
        elif value != old:
            out[key] = value
    return out


# ------------------------------------------------------------------------------------------- editor


class TrainingEditor:
    """The job spec as a form: change values, see ranges, errors, derived quantities and cost at once.

    `params_file` is where Save writes the 04_launch_training section; `run_dir` is where Launch records
    `training/job.json`; `n_train` (default: counted from the spec's train_data) sizes the estimates.
    Save writes the keys whose values differ from `saved` (the values the file holds; default: the spec's).
    """

    def __init__(self, spec: JobSpec, params_file: str | os.PathLike | None = None,
                 run_dir: str | os.PathLike | None = None, n_train: int | None = None,
                 prices: str | os.PathLike | dict | None = None, reward_latency_s: float | None = None,
                 saved: dict[str, Any] | None = None) -> None:
        w = _widgets()
        self.params_file = Path(params_file) if params_file else None
        self.run_dir = run_dir
        self.n_train = n_train if n_train is not None else derived_mod.count_records(spec.train_data)
        self.prices = prices
        self.reward_latency_s = reward_latency_s
        self.saved = dict(saved) if saved is not None else params_values(spec)
        self.last_handle: JobHandle | None = None
        self._building = False
        self._surface = spec.surface
        self._initial = spec
        self._hidden: dict[str, Any] = {}  # values of knobs the surface does not use (their widget shows its own)
        self._saved_note = ""

        self.backend = w.Dropdown(options=list(BACKENDS), value=spec.backend, description="backend")
        self.dry_run = w.Checkbox(value=spec.dry_run, description="dry run (plan only, submit nothing)", indent=False)
        self.top = {n: w.Text(value=getattr(spec, n), description=n, layout={"width": "560px"},
                              style={"description_width": "150px"}) for n in TOP_FIELDS}
        self.hyper: dict[str, Any] = {}
        self.range_labels: dict[str, Any] = {}
        self.notes: dict[str, Any] = {}  # field -> the HTML beside it that shows its error or warning
        self.hyper_box = w.VBox()
        self.aws = {n: settings_widget(AwsSettings, n, getattr(spec.aws, n)) for n in AwsSettings.model_fields}
        self.local = {n: settings_widget(LocalSettings, n, getattr(spec.local, n)) for n in LocalSettings.model_fields}
        self.issues_html = w.HTML()
        self.derived_html = w.HTML()
        self.status_html = w.HTML()
        self.save_button = w.Button(description="Save", icon="save", tooltip="write the changed keys into the params file")
        self.sweep_button = w.Button(description="Add to sweep", icon="plus",
                                     tooltip="append the changed keys as one point to the params file's sweep")
        self.launch_button = w.Button(description="Launch", icon="rocket", button_style="warning")
        self.output = w.Output()
        self.save_button.on_click(lambda _b: self._guard(self.save))
        self.sweep_button.on_click(lambda _b: self._guard(self.add_to_sweep))
        self.launch_button.on_click(lambda _b: self._guard(self.launch))

        self._build_hyper(spec.hyper)
        for widget in [self.backend, self.dry_run, *self.top.values(), *self.aws.values(), *self.local.values()]:
            widget.observe(self._changed, names="value")
        self.settings = w.Accordion(children=[w.VBox([self._row(f"aws.{n}", x) for n, x in self.aws.items()]),
                                              w.VBox([self._row(f"local.{n}", x) for n, x in self.local.items()])])
        self.settings.set_title(0, "AWS settings (sagemaker, hyperpod, bedrock)")
        self.settings.set_title(1, "local settings")
        self.settings.selected_index = None
        self.widget = w.VBox([
            w.HBox([self._row("backend", self.backend), self.dry_run]),
            w.VBox([self._row(n, x) for n, x in self.top.items()]),
            w.HTML("<b>hyperparameters</b> (allowed range on the chosen surface at the right)"),
            self.hyper_box,
            self.settings,
            self.issues_html,
            w.HTML("<b>derived quantities</b>"),
            self.derived_html,
            w.HBox([self.save_button, self.sweep_button, self.launch_button, self.status_html]),
            self.output,
        ])
        self.refresh()

    # ---------------------------------------------------------------- building

    def _row(self, field: str, widget: Any, label: Any = None) -> Any:
        """A field's widget with the note that shows its error beside it."""
        w = _widgets()
        self.notes[field] = w.HTML()
        return w.HBox([_view(widget), *([label] if label is not None else []), self.notes[field]])

    def _build_hyper(self, hyper: Hyperparameters) -> None:
        """(Re)build the hyperparameter widgets for the current surface's ranges, keeping the values."""
        w = _widgets()
        self._building = True
        try:
            table = ranges(self._surface)
            recipe = surface_defaults(self._surface)
            rows, self._hidden = [], {}
            for name in Hyperparameters.model_fields:
                rng = table.get(name)
                value = getattr(hyper, name)
                if rng is not None and not rng.exposed:  # show what the surface uses, keep the spec's value
                    self._hidden[name] = value
                    used = recipe[name][0] if name in recipe else rng.default
                    value = value if used is None else used
                widget = hyper_widget(name, value, rng, hyper.number_generation)
                widget.disabled = name in self._hidden
                widget.observe(self._changed, names="value")
                label = w.HTML(self._range_text(name, rng))
                self.hyper[name], self.range_labels[name] = widget, label
                rows.append(self._row(f"hyper.{name}", widget, label))
            self.hyper_box.children = rows
        finally:
            self._building = False

    def _range_text(self, name: str, rng: Range | None) -> str:
        extra = "0 = from epochs and data size; " if name == "max_steps" else ""
        if rng is None:
            return f"<small>{extra}no documented range</small>"
        if not rng.exposed:
            return f"<small>not used here ({html.escape(rng.note)}): the value shown applies</small>"
        note = f"; {html.escape(rng.note)}" if rng.note else ""
        return f"<small>{extra}allowed: {html.escape(rng.describe())}{note}</small>"

    # ---------------------------------------------------------------- reading the form

    def hyper_values(self) -> dict[str, Any]:
        return {n: self._hidden[n] if n in self._hidden else hyper_value(n, wid) for n, wid in self.hyper.items()}

    def values(self) -> dict[str, Any]:
        """The form as plain data in JobSpec's shape (not validated)."""
        data: dict[str, Any] = {"backend": self.backend.value, "dry_run": self.dry_run.value}
        data.update({n: wid.value for n, wid in self.top.items()})
        data["hyper"] = self.hyper_values()
        data["aws"] = {n: settings_value(AwsSettings, n, wid) for n, wid in self.aws.items()}
        data["local"] = {n: settings_value(LocalSettings, n, wid) for n, wid in self.local.items()}
        return data

    def spec(self) -> JobSpec:
        """The form as a JobSpec; raises UserError naming each field a widget holds a bad value for."""
        issues = self._form_issues()
        if issues:
            raise UserError("the form has values that make no job spec:\n" + "\n".join(f"  - {i}" for i in issues))
        return JobSpec.model_validate(self.values())

    def _form_issues(self) -> list[Issue]:
        """Values no spec can hold (wrong type, below a field's minimum, bad JSON), each with its field."""
        try:
            JobSpec.model_validate(self.values())
        except _FieldError as exc:
            return [exc.issue]
        except ValidationError as exc:
            return [Issue(".".join(str(p) for p in e["loc"]), e.get("input"), e["msg"]) for e in exc.errors()]
        return []

    @property
    def issues(self) -> list[Issue]:
        return self._form_issues() or self.spec().check()

    @property
    def derived(self) -> derived_mod.Derived | None:
        """Derived quantities of the current form; None when it has errors or the data size is unknown."""
        if self.n_train is None or any(i.severity == "error" for i in self.issues):
            return None
        # the figures notebook 04 shows: this machine's cached calibration of the same settings when there is
        # one (never measured from the form: timing steps takes a minute), the run's reward latency
        return calibration.for_run(self.spec(), self.run_dir, self.prices, n_train=self.n_train,
                                   reward_latency_s=self.reward_latency_s)

    # ---------------------------------------------------------------- reacting

    def _changed(self, change: dict[str, Any]) -> None:
        if self._building:
            return
        surface = self._current_surface()
        generations_changed = getattr(change.get("owner"), "description", None) == "number_generation"
        if surface != self._surface or generations_changed:
            self._surface = surface
            # unvalidated: a value the form holds stays in the form, even one the spec would reject
            self._build_hyper(Hyperparameters.model_construct(**self.hyper_values()))
        self.refresh()

    def _current_surface(self) -> str:
        rank = self.hyper_values().get("lora_rank", self._initial.hyper.lora_rank)
        return surface_of(self.backend.value, rank if isinstance(rank, int) else 0)

    def _widget_of(self, field: str) -> Any:
        section, _, key = field.partition(".")
        if section == "hyper":
            return self.hyper.get(key)
        if section in ("aws", "local"):
            return getattr(self, section).get(key)
        return {"backend": self.backend, "dry_run": self.dry_run, **self.top}.get(field)

    def refresh(self) -> None:
        """Show each issue beside its field (outlined), the rest under the form, then the derived numbers."""
        issues = self.issues
        errors = [i for i in issues if i.severity == "error"]
        for field, note in self.notes.items():
            mine = [i for i in issues if i.field == field]
            note.value = _notes_html(mine)
            widget = self._widget_of(field)
            if widget is not None and hasattr(widget, "layout"):
                worst = "error" if any(i.severity == "error" for i in mine) else ("warning" if mine else "")
                widget.layout.border = {"error": ERROR_BORDER, "warning": WARNING_BORDER}.get(worst, "")
        elsewhere = [i for i in issues if i.field not in self.notes]
        if any(i.field.startswith(("aws.", "local.")) and i.severity == "error" for i in issues):
            self.settings.selected_index = 0 if any(i.field.startswith("aws.") for i in errors) else 1
        self.issues_html.value = _issues_html(issues, elsewhere, self._surface)
        if errors:
            self.derived_html.value = ("<i>hidden while the spec has errors: fix the marked fields to see steps, "
                                       "rollouts, time and cost</i>")
        elif self.n_train is None:
            self.derived_html.value = f"<i>{html.escape(size_unknown(self.top['train_data'].value))}</i>"
        elif (derived := self.derived) is not None:
            self.derived_html.value = _derived_html(derived)
        self._show_status()

    def _show_status(self) -> None:
        """The unsaved-changes mark (which keys differ from the file), or the last save's note."""
        try:
            pending = list(self.section_values())
        except UserError:
            pending = []
        if pending:
            keys = ", ".join(pending)
            self.status_html.value = f"<span style='color:#9a6700'>&#9679; unsaved changes: {html.escape(keys)}</span>"
        else:
            self.status_html.value = self._saved_note

    def _guard(self, action: Any) -> None:
        """Button callbacks: show a user error in the status line instead of a traceback in the log."""
        try:
            action()
        except UserError as exc:
            self.status_html.value = f"<pre style='color:#b00;white-space:pre-wrap'>{html.escape(str(exc))}</pre>"

    # ---------------------------------------------------------------- actions

    def section_values(self) -> dict[str, Any]:
        """What Save writes: the keys whose values differ from the file's (aws/local: their changed keys)."""
        return changed_values(params_values(self.spec()), self.saved)

    def _writable(self, path: str | os.PathLike | None, refused: str) -> Path:
        """The params file an action writes to, once the form is a valid spec (`refused`: "not saved", ...)."""
        target = Path(path) if path else self.params_file
        if target is None:
            raise UserError(f"{refused}: no params file to write to; pass params_file= to the editor "
                            "(e.g. params/demo.yaml)")
        errors = [i for i in self.issues if i.severity == "error"]
        if errors:
            raise UserError(f"{refused}, the spec has errors:\n" + "\n".join(f"  - {e}" for e in errors))
        return target

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Merge the changed keys into the params file's 04 section (atomically); refuses a spec with errors."""
        target = self._writable(path, "not saved")
        values = self.section_values()
        save_section(target, SECTION, values)
        self.saved = params_values(self.spec())
        keys = ", ".join(values) if values else "nothing changed"
        self._saved_note = f"saved into <code>{html.escape(str(target))}</code> ({SECTION}): {html.escape(keys)}"
        self._show_status()
        return target

    def sweep_point(self) -> dict[str, Any]:
        """The form's changes from the params file as one sweep point (`04_launch_training.NAME` -> value;
        `aws.` and `local.` keys one by one), what `nbkit run --set` and `nbkit sweep` read."""
        point: dict[str, Any] = {}
        for key, value in self.section_values().items():
            if isinstance(value, dict):
                point.update({f"{SECTION}.{key}.{inner}": v for inner, v in value.items()})
            else:
                point[f"{SECTION}.{key}"] = value
        return point

    def add_to_sweep(self, path: str | os.PathLike | None = None) -> int:
        """Append the form's changes as a point to the params file's `sweep.points` (the file's own values are
        the sweep's baseline; nothing else in the file changes); returns how many points it lists now."""
        target = self._writable(path, "not added to the sweep")
        point = self.sweep_point()
        if not point:
            raise UserError(f"nothing differs from {target}: a sweep point is what the form changes, so change a "
                            "value first (Save makes the current values the baseline)")
        total = add_point(target, point)
        shown = ", ".join(f"{k.removeprefix(SECTION + '.')}={v}" for k, v in point.items())
        self.status_html.value = (f"added to the sweep in <code>{html.escape(str(target))}</code> "
                                  f"({total} point{'s' if total != 1 else ''}): {html.escape(shown)}; run them with "
                                  f"<code>nbkit sweep --params {html.escape(str(target))}</code>")
        return total

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

    With `params_file` holding a 04_launch_training section, that section (plus the file's shared keys) is
    the starting point, so Save changes only what the form changed; otherwise the notebook's parameters are.
    Defaults resolve as notebook 04's spec table resolves them (the parameters' run folder, "" included).
    """
    if spec is not None and params is not None:
        raise UserError("give the editor either a spec or params, not both")
    saved: dict[str, Any] | None = None
    if spec is None:
        values = params.model_dump() if hasattr(params, "model_dump") else dict(params or {})
        from_file = _file_section(params_file)
        if from_file is not None:
            values = from_file | {"run_dir": values.get("run_dir", "")}
        values = params_mod.validate(SECTION, values, source=str(params_file or "")).model_dump()
        run_dir = run_dir if run_dir is not None else values.get("run_dir", "")
        spec = from_params(values, run_dir=str(run_dir))
        saved = params_values(spec) if from_file is not None else None
    return TrainingEditor(spec, params_file=params_file, run_dir=run_dir, saved=saved, **kwargs)


def _file_section(params_file: str | os.PathLike | None) -> dict[str, Any] | None:
    """The 04 section of a params file (with its shared keys), or None when the file has none."""
    if params_file is None or not Path(params_file).is_file():
        return None
    return params_mod.load_file(params_file).get(SECTION)


def _notes_html(issues: list[Issue]) -> str:
    parts = []
    for issue in issues:
        color = "#cf222e" if issue.severity == "error" else "#9a6700"
        parts.append(f"<span style='color:{color}'><b>{issue.severity}</b>: {html.escape(issue.message)}</span>")
    return "<br>".join(parts)


def _issues_html(issues: list[Issue], elsewhere: list[Issue], surface: str) -> str:
    title = html.escape(SURFACE_TITLES.get(surface, surface))
    errors = sum(i.severity == "error" for i in issues)
    warnings = len(issues) - errors
    if not issues:
        return f"<span style='color:#1a7f37'>&#10003; valid for {title}</span>"
    counts = " and ".join(f"{n} {word}{'s' if n > 1 else ''}" for n, word in ((errors, "error"), (warnings, "warning"))
                          if n)
    head = (f"<span style='color:{'#cf222e' if errors else '#9a6700'}'>{counts} on {title}: see the marked "
            "fields</span>")
    items = "".join(f"<li style='color:{'#cf222e' if i.severity == 'error' else '#9a6700'}'><b>{i.severity}</b> "
                    f"{html.escape(str(i))}</li>" for i in elsewhere)
    return head + (f"<ul style='margin:0'>{items}</ul>" if items else "")


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


def _yaml() -> Any:
    """A round-trip YAML that keeps comments, order and quotes, and writes what PyYAML (1.1) reads back:
    `null`, and floats with a dot before the exponent (1.0e-07, not 1e-07, which YAML 1.1 reads as text)."""
    from ruamel.yaml import YAML

    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.representer.add_representer(type(None), lambda r, _d: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    rt.representer.add_representer(float, lambda r, d: r.represent_scalar("tag:yaml.org,2002:float", _float_text(d)))
    return rt


def _float_text(value: float) -> str:
    """PyYAML's spelling of a float (its represent_float), so the file reads the same in both."""
    if value != value:
        return ".nan"
    if value in (math.inf, -math.inf):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value).lower()
    return text.replace("e", ".0e", 1) if "." not in text and "e" in text else text


def _last_key_comment(mapping: Any) -> tuple[Any, Any] | None:
    """(mapping, key) of the deepest last key of a block mapping: where ruamel keeps the blank lines and
    comments that follow the mapping."""
    from ruamel.yaml.comments import CommentedMap

    if not isinstance(mapping, CommentedMap) or not mapping:
        return None
    key = list(mapping)[-1]
    inner = _last_key_comment(mapping[key])
    return inner or (mapping, key)


def _append_keys(section: Any, values: dict[str, Any]) -> None:
    """Add new keys at the end of a section, before the blank lines and comments that close it."""
    last = _last_key_comment(section)
    trailing = last[0].ca.items.pop(last[1], None) if last else None
    for key, value in values.items():
        section[key] = value
    new_last = _last_key_comment(section)
    if trailing is not None and new_last is not None:
        new_last[0].ca.items[new_last[1]] = trailing


def save_section(path: str | os.PathLike, section: str, values: dict[str, Any]) -> Path:
    """Merge `values` into one section of a YAML params file, keeping everything else (comments included).

    Keys of the section not in `values` stay; a mapping value (aws, local) is merged key by key into the
    file's mapping. The result must read back (with PyYAML, as the pipeline reads it) as the old file with
    exactly these values changed, else nothing is written. The file is replaced atomically.
    """
    from ruamel.yaml.comments import CommentedMap

    path = Path(path)
    text = path.read_text() if path.exists() else ""
    try:
        old = (yaml.safe_load(text) or {}) if text else {}
    except yaml.YAMLError as exc:
        raise UserError(f"params file {path} is not valid YAML ({exc}); fix it before saving into it") from None
    if not isinstance(old, dict) or not isinstance(old.get(section) or {}, dict):
        raise UserError(f"params file {path} must be a mapping of sections, with {section!r} a mapping")
    rt = _yaml()
    doc = rt.load(text) if text.strip() else CommentedMap()
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc.get(section), CommentedMap):
        doc[section] = CommentedMap()
    body = doc[section]
    body.fa.set_block_style()
    wanted = json.loads(json.dumps(old.get(section) or {}))
    new_keys = {}
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(body.get(key), CommentedMap):
            body[key].fa.set_block_style()
            fresh = {k: v for k, v in value.items() if k not in body[key]}
            for k, v in value.items():
                if k in body[key]:
                    body[key][k] = v
            _append_keys(body[key], fresh)
            wanted[key] = {**(wanted.get(key) or {}), **value}
        elif key in body:
            body[key] = value
            wanted[key] = value
        else:
            new_keys[key] = value
            wanted[key] = value
    _append_keys(body, new_keys)
    buffer = io.StringIO()
    rt.dump(doc, buffer)
    new_text = buffer.getvalue()
    expected = {**old, section: wanted}
    if yaml.safe_load(new_text) != json.loads(json.dumps(expected, default=str)):
        raise UserError(f"could not merge the changes into {path} without altering other keys; nothing was "
                        "written (save into a new file with save_to, or edit the file by hand)")
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
