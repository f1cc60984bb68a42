"""`ExportConfig`: everything `bertfast export` takes, declared once (its flags are generated
from the fields and their docstring entries by `bertfast.flags`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from .. import tasks
from ..checks import check_float, check_int
from ..errors import BertfastError
from ..flags import meta
from . import distill as _distill
from . import variants as _variants
from .evalset import parse_label_names
from .validate import DEFAULT_MAX_DROP, DEFAULT_MIN_AGREEMENT
from .variants import DEVICE_CHOICES


@dataclass
class ExportConfig:
    """Everything `bertfast export` takes; each field is the CLI flag of the same name.

    Attributes:
        model_dir: fine-tuned model folder (from `bertfast train`, or any transformers
            sequence-classification checkpoint).
        out: export folder (default: exports/<model folder name>).
        device: provider(s) to build for: cpu, a GPU provider (cuda, tensorrt: adds fp16) or all.
        variants: comma list of variants, or auto (fp32 + int8 dynamic/per-channel/static, plus
            int8-mixed when no plain int8 variant keeps the accuracy, plus fp16 for GPU providers).
        quantize: int8 preset: auto (from CPU flags), avx512_vnni, avx2, arm64.
        max_metric_drop: points (metric x 100) of the task's primary metric (accuracy, micro_f1,
            pearson; ndcg@10 for reranking) a default variant may lose vs PyTorch fp32 (default 0.5).
        min_agreement: percent of inputs on which a default variant must decide as PyTorch fp32
            does (same top label / label set / close score; reranking: same top document per
            query; default 99.5).
        eval_data: labeled held-out file to validate on (default: the model's splits/validation.jsonl).
        agreement_data: texts without labels (any supported format; a labeled file's labels are
            ignored), e.g. a sample of production traffic: they count for agreement with PyTorch,
            score error and batch invariance; with no --eval-data the gate bounds agreement alone.
        max_agreement_samples: seeded sample of --agreement-data rows used (keeps export time bounded).
        text_column: text column of --eval-data.
        label_column: label column of --eval-data.
        text_pair_column: second-text column of --eval-data (pair models).
        label_separator: split string labels of --eval-data into multi-label lists.
        task: task to validate (default: the checkpoint's problem_type, else inferred from the labels).
        label_names: comma list naming the classes in id order (e.g. neg,pos); replaces id2label
            in the export (then integer data labels are class ids too).
        positive_label: the class meaning relevant for a two-class reranker (default: what
            training recorded, else inferred where unambiguous: 0/1, yes/no, true/false,
            relevant/irrelevant, positive/negative).
        max_eval_samples: stratified cap on validation rows (keeps export time bounded).
        calibration_samples: training texts used to calibrate int8-static.
        max_length: tokens per text PyTorch's reference and every variant are validated at
            (default: the training max length).
        window_search: also try shorter windows (3/4, 1/2, 1/4; start or head+tail) of the
            accepted variants and default to the fastest the gate accepts.
        opset: ONNX opset.
        threads: CPU threads for validation and timing (default: CPUs usable by this process).
        allow_unknown_tokens: export even when over 5 percent of the eval data's tokens are the
            tokenizer's unknown token ([UNK]: a tokenizer that is not the model's, or text in
            another language).
        accept_weak_reference: export even when PyTorch fp32 scores no better than a constant
            answer on the labeled eval data (majority class, same label set, no correlation);
            recorded as weak_reference in the manifest.
        compress: also build smaller students of the model (fewer layers, then narrower ones),
            distilled on its scores, and put them through the same variants and gate
            (exporter/compress.py).
        compress_budget: time for the students' distillation, e.g. 20m, 1h, 900s; a student that
            does not fit is skipped and said so.
        distill_data: texts (no labels needed) the students learn from, besides the training split.
        distill_windows: also learn from up to this many later windows of each distillation text
            longer than max length (article bodies past the first window): more data from the
            texts you have; each window costs its share of the budget.
        distill_augment: also learn from this many perturbed copies of each distillation text
            (10 percent of words masked, a quarter of the copies cut to a span of words), each
            scored by the model: its answers around your texts, not only on them; each copy costs
            its share of the budget (measured no more faithful on BBC:
            benchmarks/results/distill-augment-minilm-bbc).
        distill_mix: also learn from this many cut-and-paste mixes of each distillation text (its
            first words, then another text's), each scored by the model: texts near its own
            decision boundaries, where students flip; each mix costs its share of the budget
            (measured: fewer flips on unseen headlines, not on the gated articles, BBC:
            benchmarks/results/distill-mix-minilm-bbc-val45).
        distill_epochs: passes over the distillation texts per student.
        distill_loss: what a student learns: `logits` (the teacher's logits) or `hidden` (also,
            per layer, the teacher's hidden states at the matching depth; measured no more
            faithful on BBC and 1.47x the time: benchmarks/results/distill-loss-minilm-bbc).
        students: comma-separated student recipes to try, least compressed first (default all:
            L2of3, L1of2, L1of2-ffn1of2, L1of3, L1of4; see exporter/students.py).
        resume: continue an interrupted --compress from its work folder (<out>.compress/).
        force: replace an existing export folder.
    """

    model_dir: str
    out: str | None = None
    device: str = field(default="cpu", metadata=meta(choices=DEVICE_CHOICES))
    variants: str = "auto"
    quantize: str = "auto"
    max_metric_drop: float | None = None
    min_agreement: float | None = None
    eval_data: str | None = None
    agreement_data: str | None = None
    max_agreement_samples: int = 2000
    text_column: str = "text"
    label_column: str = "label"
    text_pair_column: str | None = None
    label_separator: str | None = None
    task: str | None = field(default=None, metadata=meta(choices=tasks.TASK_NAMES))
    label_names: str | None = None
    positive_label: str | None = None
    max_eval_samples: int | None = 2000
    calibration_samples: int = 128
    max_length: int | None = None
    window_search: bool = field(default=True, metadata=meta(negatable=True))
    opset: int = 17
    threads: int | None = None
    allow_unknown_tokens: bool = False
    accept_weak_reference: bool = False
    compress: bool = False
    compress_budget: str = "20m"
    distill_data: str | None = None
    distill_windows: int = 0
    distill_augment: int = 0
    distill_mix: int = 0
    distill_epochs: float = 3.0
    distill_loss: str = field(default=next(iter(_distill.LOSSES)), metadata=meta(choices=tuple(_distill.LOSSES)))
    students: str | None = None
    resume: bool = False
    force: bool = False

    def __post_init__(self):
        _variants.check_device(self.device)
        if self.variants != "auto":
            _variants.parse_names(self.variants)
        # NaN, inf, negatives and wrong types (Python API) all stop here, naming the flag.
        check_float("--max-metric-drop", self.max_metric_drop, 0, 100, optional=True, example="0.5 (points)")
        check_float("--min-agreement", self.min_agreement, 0, 100, optional=True, example="99.5 (percent)")
        if self.task is not None:
            tasks.get(self.task)
        for flag, value in (("--text-pair-column", self.text_pair_column), ("--label-separator", self.label_separator),
                            ("--positive-label", self.positive_label)):
            if value is not None and (not isinstance(value, str) or not value):
                raise BertfastError(f"{flag} must be a non-empty string; got {value!r}.")
        parse_label_names(self.label_names)
        check_int("--max-eval-samples", self.max_eval_samples, 2, optional=True)
        check_int("--max-agreement-samples", self.max_agreement_samples, 2)
        if self.agreement_data is not None and (not isinstance(self.agreement_data, str) or not self.agreement_data):
            raise BertfastError(f"--agreement-data must be a file path; got {self.agreement_data!r}.")
        check_int("--calibration-samples", self.calibration_samples, 1)
        check_int("--max-length", self.max_length, 8, optional=True)
        check_int("--opset", self.opset, 11, 21)
        if not isinstance(self.window_search, bool):
            raise BertfastError(f"--window-search must be True or False; got {self.window_search!r}.")
        check_int("--threads", self.threads, 1, optional=True)
        from .compress import parse_budget

        parse_budget(self.compress_budget)
        check_int("--distill-windows", self.distill_windows, 0)
        check_int("--distill-augment", self.distill_augment, 0, 100)
        check_int("--distill-mix", self.distill_mix, 0, 100)
        check_float("--distill-epochs", self.distill_epochs, 0, 1000, low_open=True, example="3")
        if self.distill_loss not in _distill.LOSSES:
            raise BertfastError(f"--distill-loss must be one of {', '.join(_distill.LOSSES)}; got {self.distill_loss!r}.")
        if self.students is not None:
            from .students import pick

            pick(self.students)
        defaults = {f.name: f.default for f in fields(self)}
        given = [n for n in ("distill_data", "resume", "students", "distill_windows", "distill_augment",
                             "distill_mix", "distill_epochs", "distill_loss")
                 if getattr(self, n) != defaults[n]]
        if given and not self.compress:
            flag = "--" + given[0].replace("_", "-")
            raise BertfastError(f"{flag} is for --compress; add --compress (or drop {flag}).")
        if self.out is None:
            self.out = str(Path("exports") / Path(self.model_dir).resolve().name)

    @property
    def budget(self) -> float:
        """The gate's budget in points of the primary metric."""
        return DEFAULT_MAX_DROP if self.max_metric_drop is None else float(self.max_metric_drop)

    @property
    def agreement(self) -> float:
        """The gate's minimum agreement with PyTorch fp32, percent."""
        return DEFAULT_MIN_AGREEMENT if self.min_agreement is None else float(self.min_agreement)

    def variant_list(self, preset: str = "avx512_vnni") -> list[str]:
        """The variants to build up front (fp32 first) for the resolved int8 `preset`."""
        names = _variants.auto_names(self.device, preset) if self.variants == "auto" else _variants.parse_names(self.variants)
        return ["fp32", *[n for n in names if n != "fp32"]]
