"""Distillation of a BERT teacher into a student supernet (`task: distill`, `bertnas compress`).

The teacher (any transformers BERT, `init_from_bert`) is frozen and runs without gradient. The
student is a `BertNasForMaskedLM` supernet of `model.num_hidden_layers` chain layers (see
`build_student`). Both chains are cut into B blocks: student block j covers chain layers
`[j N/B, (j+1) N/B)`, teacher block j layers `[j L/B, (j+1) L/B)`.

Objective on one micro-batch (tokens masked as for MLM with the loop's generator, the teacher
sees the same masked input):

- block-wise (NAS-BERT): student block j runs the sampled path's ops from the teacher's hidden
  state at the block's input (block 0: the student's own embeddings) and is scored by the MSE
  to the teacher's hidden state at the block's output, divided by that state's mean per-feature
  variance (scale-free, as MAGIC-A's alignment). Where widths differ, a learned linear map per
  block boundary bridges them (`DistillBridges`: teacher -> student at inputs, student ->
  teacher at outputs; started from the teacher channels the student kept, else the
  teacher's principal directions);
- whole path (optional): the same normalised MSE between the student's final hidden state and
  the teacher's (`final_weight`), KL divergence of the MLM logits at the masked positions
  (`logits_weight`, temperature `temperature`; only when the teacher has a trained MLM head) and
  the student's own MLM loss on the masked tokens (`mlm_weight`, trains its head).

Held-out score (training's MAGIC-A checks, `bertnas search`, `bertnas compress`): the whole
student path run from its own embeddings, the normalised MSE of its hidden state at every block
end against the teacher's, summed over blocks (+ the logits / MLM terms with their weights):
how far the subnet as it will be exported is from the teacher.

Options come from the run config's `space_options` (see `DISTILL_DEFAULTS`); they and the
teacher's path are part of the checkpoint signature, so a resume checks them.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bertnas.core.errors import UserError
from bertnas.models.student import load_teacher, student_supernet
from bertnas.storage.checkpoint import MODEL_DIR, load_model_weights
from bertnas.tasks.bert import INPUT_KEYS, BertTask, absolute_if_local, load_lm_data, mlm_heldout
from bertnas.tasks.objectives import ObjectiveOutput, mask_tokens

BRIDGES_DIR = "bridges"
TEACHER_KEY = "teacher_states"  # held-out batches carry the teacher's block-boundary states
TEACHER_LOGITS_KEY = "teacher_logits"  # ... and its logits at the masked positions (logits KD)
DISTILL_DEFAULTS = {
    "blocks": None,  # B; None: gcd(teacher layers, student chain layers)
    "block_weight": 1.0,
    "final_weight": 0.0,
    "logits_weight": 0.0,  # used only when the teacher has a trained MLM head
    "mlm_weight": 0.1,
    "temperature": 1.0,
    "embedding_size": None,  # factorised student embeddings (needs the compress student builder)
    "init": "importance",  # how a narrower student starts from the teacher
    "calibration_batches": 4,  # batches of teacher activations for the importance / bridge init
}


def distill_options(given: dict | None) -> dict:
    """`DISTILL_DEFAULTS` updated with `given` (unknown keys are errors naming the known ones)."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(DISTILL_DEFAULTS))
    if unknown:
        raise UserError(f"unknown distillation option(s) {', '.join(unknown)} in space_options",
                        f"known: {', '.join(DISTILL_DEFAULTS)}")
    options = {**DISTILL_DEFAULTS, **given}
    for key in ("block_weight", "final_weight", "logits_weight", "mlm_weight"):
        if float(options[key]) < 0:
            raise UserError(f"distillation option {key} must be >= 0, got {options[key]}")
    if float(options["temperature"]) <= 0:
        raise UserError(f"distillation option temperature must be > 0, got {options['temperature']}")
    return options


def frozen_teacher(source):
    """(teacher `BertForMaskedLM` in eval mode without gradients, whether its MLM head was trained:
    a sentence-transformers BERT has none). A model that is not a BERT is a ValueError."""
    teacher, missing = load_teacher(source)
    teacher.requires_grad_(False)
    return teacher, not any(k.startswith("cls.") for k in missing)


class DistillBridges(nn.Module):
    """Linear maps between teacher and student widths: `down[j]` (teacher -> student) feeds
    student block j (j >= 1), `up[j]` (student -> teacher) maps block j's output for the loss."""

    def __init__(self, teacher_width: int, student_width: int, num_blocks: int):
        super().__init__()
        self.down = nn.ModuleList([nn.Linear(teacher_width, student_width) for _ in range(num_blocks)])
        self.up = nn.ModuleList([nn.Linear(student_width, teacher_width) for _ in range(num_blocks)])

    @torch.no_grad()
    def init_from_directions(self, directions: torch.Tensor, mean: torch.Tensor) -> None:
        """down = projection on `directions` (teacher x student, orthonormal columns: principal
        directions, or the teacher channels the student kept) after centring; up = its transpose
        back, plus the mean: up(down(t)) is t's projection."""
        for down, up in zip(self.down, self.up):
            down.weight.copy_(directions.T)
            down.bias.copy_(-(mean @ directions))
            up.weight.copy_(directions)
            up.bias.copy_(mean)


def principal_directions(states: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(teacher width x `width` orthonormal directions of largest variance, mean) of `states` (n x H);
    when `width` > H the extra columns are zero (the student's extra features start unused)."""
    states = states.double()
    mean = states.mean(0)
    cov = torch.cov((states - mean).T)
    _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
    k = min(width, states.shape[1])
    directions = torch.zeros(states.shape[1], width, dtype=torch.float64)
    directions[:, :k] = vectors.flip(-1)[:, :k]
    return directions.float(), mean.float()


def _masks(attention_mask, dtype):
    """(attention mask, token mask, loss weight) as `BertNasModel.forward` builds them; all None
    when nothing is padded."""
    if attention_mask is None or bool(attention_mask.all()):
        return None, None, None
    keep = attention_mask.bool()
    return keep[:, None, None, :], keep[:, :, None].to(dtype), keep


def normalised_mse(student: torch.Tensor, target: torch.Tensor, keep=None) -> torch.Tensor:
    """MSE / the target's mean per-feature variance (over the real tokens)."""
    if keep is not None:
        student, target = student[keep], target[keep]
    flat = target.reshape(-1, target.shape[-1]).float()
    var = flat.var(dim=0, unbiased=False).mean() if flat.shape[0] > 1 else flat.new_ones(())
    return F.mse_loss(student.float(), flat.view_as(target).to(student.dtype).float()) / (var + 1e-6)


def build_student(teacher, model_options: dict, options: dict, calibration: list | None = None):
    """The student supernet (`bertnas.models.student.student_supernet`): `model_options` gives its
    hidden_size (default the teacher's), num_hidden_layers (default 2 x the teacher's layers),
    candidates and dropout; `options` its embedding_size and init; `calibration` batches turn on
    activation importance for a narrower student."""
    dropout = {k: model_options[k] for k in ("hidden_dropout_prob", "attention_probs_dropout_prob")
               if k in model_options}
    try:
        return student_supernet(
            teacher, model_options.get("hidden_size", teacher.config.hidden_size),
            model_options.get("num_hidden_layers", 2 * teacher.config.num_hidden_layers),
            model_options.get("candidates") or [f"mha{teacher.config.num_attention_heads}", "ffn"],
            embedding_size=options.get("embedding_size"), init=options.get("init", "importance"),
            calibration_batches=calibration, **dropout)
    except ValueError as err:
        raise UserError(f"cannot build the student: {err}", "fix the student's sizes or candidates") from None


class DistillTask(BertTask):
    """Block-wise (and optionally whole-path) distillation of a BERT teacher into a student supernet."""

    metric = "distill_loss"
    model_class_name = "BertNasForMaskedLM"

    def __init__(self):
        super().__init__()
        self.teacher = None
        self.teacher_has_head = False
        self.teacher_source = None
        self.options: dict = dict(DISTILL_DEFAULTS)
        self.bridges = None
        self.num_blocks = 1

    # -- building ---------------------------------------------------------------------------
    def _build_models(self, cfg) -> None:
        if not cfg.init_from_bert:
            raise UserError("task 'distill' needs a teacher", "pass --init-from-bert PATH_OR_ID (the teacher BERT)")
        self.options = distill_options(cfg.space_options)
        self._load_teacher(cfg.init_from_bert)
        if self.teacher.config.vocab_size != len(self.tokenizer):
            raise UserError(f"the teacher has vocab {self.teacher.config.vocab_size} but the tokenizer has "
                            f"{len(self.tokenizer)}", f"use the teacher's tokenizer (--tokenizer {cfg.init_from_bert})")
        calibration = self._calibration_batches(cfg)
        model = build_student(self.teacher, dict(cfg.model), self.options, calibration)
        if cfg.arch is not None:  # stand-alone distillation of one path (a hand-made baseline)
            model = model.extract(list(cfg.arch))
        self.model = model
        self.modules = {MODEL_DIR: model}
        self._setup_blocks()
        if self.bridges is not None:
            states = self._teacher_states_for(calibration)
            kept = getattr(getattr(model, "student_init", None), "hidden_channels", None)
            if kept and len(kept) == self.model.config.hidden_size:  # the teacher channels the student kept
                directions = torch.zeros(states.shape[1], len(kept))
                directions[torch.tensor(kept), torch.arange(len(kept))] = 1.0
                mean = states.mean(0)
            else:
                directions, mean = principal_directions(states, self.model.config.hidden_size)
            self.bridges.init_from_directions(directions, mean)
            self.modules[BRIDGES_DIR] = self.bridges

    def _load_teacher(self, source: str) -> None:
        self.teacher_source = absolute_if_local(source)
        self.teacher, self.teacher_has_head = frozen_teacher(source)

    def _calibration_batches(self, cfg) -> list[dict]:
        """The first training rows (no masking): teacher activations for the student init and the bridges."""
        n = min(len(self.train_data), cfg.batch_size * int(self.options["calibration_batches"] or 1))
        return [self.collate(self.train_data, range(s, min(s + cfg.batch_size, n))) for s in range(0, n, cfg.batch_size)]

    @torch.no_grad()
    def _teacher_states_for(self, batches) -> torch.Tensor:
        """Every teacher hidden state of `batches` as rows (n x teacher width), padding dropped."""
        rows = []
        for batch in batches:
            out = self.teacher.bert(**{k: v for k, v in batch.items() if k in INPUT_KEYS}, output_hidden_states=True)
            mask = batch.get("attention_mask")
            for h in out.hidden_states:
                rows.append(h[mask.bool()] if mask is not None else h.reshape(-1, h.shape[-1]))
        return torch.cat(rows)

    def _setup_blocks(self) -> None:
        teacher_layers = self.teacher.config.num_hidden_layers
        student_layers = len(self.choice_layers())
        blocks = self.options.get("blocks") or math.gcd(teacher_layers, student_layers)
        if teacher_layers % blocks or student_layers % blocks:
            raise UserError(f"distillation blocks={blocks} must divide the teacher's {teacher_layers} layers and the "
                            f"student's {student_layers} chain layers",
                            f"use a common divisor, e.g. blocks={math.gcd(teacher_layers, student_layers)}")
        self.num_blocks = blocks
        self.student_bounds = [j * student_layers // blocks for j in range(blocks + 1)]
        self.teacher_bounds = [j * teacher_layers // blocks for j in range(blocks + 1)]
        t_width, s_width = self.teacher.config.hidden_size, self.model.config.hidden_size
        if self.bridges is None and t_width != s_width:
            self.bridges = DistillBridges(t_width, s_width, blocks)

    def signature(self) -> dict:
        sig = super().signature()
        for key in ("embedding_size",):  # student fields the compress builder may add
            if hasattr(self.model.config, key):
                sig[key] = getattr(self.model.config, key)
        sig["teacher"] = self.teacher_source
        sig["distill"] = {k: v for k, v in self.options.items() if k != "calibration_batches"}
        return sig

    @classmethod
    def from_checkpoint(cls, ckpt: Path, state: dict, device="cpu") -> DistillTask:
        task = super().from_checkpoint(ckpt, state, device)
        sig = state.get("signature") or {}
        if not sig.get("teacher"):
            raise UserError(f"{ckpt} records no teacher", "it was not written by a distill run")
        task.options = {**DISTILL_DEFAULTS, **(sig.get("distill") or {})}
        task._load_teacher(sig["teacher"])
        task.teacher.to(device)
        # The held-out rows with the tokenizer the run read them with (the teacher's): in the process
        # that trained (bertnas compress) the corpus is not tokenised a second time.

        vocab = int((state.get("config") or {}).get("tokenizer_vocab_size") or 1000)
        if task.data_options.get("seq_len") and task.data_options.get("tokenizer"):
            _, _, task.val_data = load_lm_data(task.data_options, task.data_options["tokenizer"], vocab)
        task._setup_blocks()
        if task.bridges is not None:
            load_model_weights(task.bridges, ckpt / BRIDGES_DIR)
            task.bridges.to(device).eval()
            task.modules[BRIDGES_DIR] = task.bridges
        return task

    # -- the objective ------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_outputs(self, inputs: dict, logits_at=None):
        """(teacher hidden states at the block boundaries, its logits at `logits_at` or None)."""
        device = inputs["input_ids"].device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        out = self.teacher.bert(**inputs, output_hidden_states=True)
        states = [out.hidden_states[i] for i in self.teacher_bounds]
        logits = None
        if logits_at is not None:
            logits = self.teacher.cls(out.last_hidden_state[logits_at])
        return states, logits

    def embed(self, inputs: dict):
        """The student's embeddings at the hidden width (factorised ones mapped up), as its forward does."""
        backbone = self.model.bert
        x = backbone.embeddings(inputs["input_ids"], inputs.get("token_type_ids"))
        project = getattr(backbone, "embeddings_project", None)
        return project(x) if project is not None else x

    def _down(self, j: int, x):
        return x if self.bridges is None else self.bridges.down[j](x)

    def _up(self, j: int, x):
        return x if self.bridges is None else self.bridges.up[j](x)

    def blockwise_losses(self, inputs: dict, ops, teacher_states, embeddings=None):
        """(per-block normalised MSEs of student blocks fed the teacher's block inputs, hidden
        states of the block-fed chain: embeddings then every layer's output)."""
        layers = self.choice_layers()
        if embeddings is None:
            embeddings = self.embed(inputs)
        attn_mask, token_mask, keep = _masks(inputs.get("attention_mask"), embeddings.dtype)
        losses, hidden = [], [embeddings]
        for j in range(self.num_blocks):
            x = embeddings if j == 0 else self._down(j, teacher_states[j])
            for i in range(self.student_bounds[j], self.student_bounds[j + 1]):
                x = layers[i](x, ops[i], attn_mask, token_mask)
                hidden.append(x)
            losses.append(normalised_mse(self._up(j, x), teacher_states[j + 1], keep))
        return torch.stack(losses), tuple(hidden)

    def path_loss(self, inputs: dict, ops, teacher_states, labels, teacher_logits=None, hidden_states=None,
                  training: bool = False):
        """(loss, metrics, hidden states) of the student path `ops`. Held-out (`training` False): the
        normalised MSEs at every block end of the whole path, summed. Training: the final-hidden term
        (`final_weight`) only, the block terms coming from `blockwise_losses`. Both add the weighted
        MLM and logits-KD terms on the last hidden state. `hidden_states` (embeddings, then every
        layer's output) are computed when not given."""
        o = self.options
        if hidden_states is None:
            hidden_states = self.model.bert(**inputs, arch=ops, output_hidden_states=True).hidden_states
        _, _, keep = _masks(inputs.get("attention_mask"), hidden_states[0].dtype)
        last = self.num_blocks - 1
        metrics = {}
        if training:
            loss = hidden_states[-1].new_zeros(())
            if float(o["final_weight"]) > 0:
                final = normalised_mse(self._up(last, hidden_states[-1]), teacher_states[-1], keep)
                loss = loss + float(o["final_weight"]) * final
                metrics["final_mse"] = float(final.detach())
        else:
            ends = torch.stack([normalised_mse(self._up(j, hidden_states[self.student_bounds[j + 1]]),
                                               teacher_states[j + 1], keep) for j in range(self.num_blocks)])
            loss = ends.sum()
            metrics["path_mse"] = float(loss.detach())
        chosen = labels != -100
        if chosen.any() and (float(o["mlm_weight"]) > 0 or teacher_logits is not None):
            logits = self.model.cls(hidden_states[-1][chosen])
            if float(o["mlm_weight"]) > 0:
                mlm = F.cross_entropy(logits.float(), labels[chosen])
                loss = loss + float(o["mlm_weight"]) * mlm
                metrics["mlm_loss"] = float(mlm.detach())
            if teacher_logits is not None:
                t = float(o["temperature"])
                kd = F.kl_div(F.log_softmax(logits.float() / t, -1), F.softmax(teacher_logits.float() / t, -1),
                              reduction="batchmean") * t * t
                loss = loss + float(o["logits_weight"]) * kd
                metrics["logits_kd"] = float(kd.detach())
        return loss, metrics, hidden_states

    def compute(self, batch, arch, generator):
        o = self.options
        ops = tuple(arch.ops if hasattr(arch, "ops") else arch)
        masked, labels = mask_tokens(batch["input_ids"], self.tokenizer, generator, self.run_options["mlm_probability"])
        inputs = {"input_ids": masked, **{k: batch[k] for k in ("attention_mask", "token_type_ids") if k in batch}}
        use_logits = self.teacher_has_head and float(o["logits_weight"]) > 0
        teacher_states, teacher_logits = self.teacher_outputs(inputs, (labels != -100) if use_logits else None)
        blocks, hidden = self.blockwise_losses(inputs, ops, teacher_states)
        loss = float(o["block_weight"]) * blocks.sum()
        metrics = {"block_mse": float(blocks.sum().detach())}
        if float(o["final_weight"]) > 0 or float(o["mlm_weight"]) > 0 or use_logits:
            # The final-hidden term needs the path run whole; the head terms alone read the last
            # block's output (fed the teacher's input), which saves a second forward.
            whole = None if float(o["final_weight"]) > 0 else hidden
            extra, more, hidden = self.path_loss(inputs, ops, teacher_states, labels, teacher_logits, whole,
                                                 training=True)
            loss = loss + extra
            metrics.update(more)
        return ObjectiveOutput(loss, hidden, metrics, inputs=inputs)

    # -- scoring ------------------------------------------------------------------------------
    def _heldout_batches(self, val, batch_size, eval_batches, mask_seed, mlm_probability):
        """MLM-masked held-out rows (as the MLM task's) plus the teacher's outputs on them."""
        batches = mlm_heldout(val, self.tokenizer, batch_size, eval_batches, mask_seed, mlm_probability)
        use_logits = self.teacher_has_head and float(self.options["logits_weight"]) > 0
        device = next(self.model.parameters()).device
        for batch in batches:
            inputs = {k: v.to(device) for k, v in batch.items() if k in INPUT_KEYS}
            states, logits = self.teacher_outputs(inputs, (batch["labels"] != -100).to(device) if use_logits else None)
            batch[TEACHER_KEY] = torch.stack(states).cpu()
            if logits is not None:
                batch[TEACHER_LOGITS_KEY] = logits.cpu()
        return batches

    def loss_fn(self, model, batch, ops):
        """Held-out distillation loss of the whole path `ops` x the batch's sequences (see module doc)."""
        inputs = {k: batch[k] for k in INPUT_KEYS if k in batch}
        loss, _, _ = self.path_loss(inputs, tuple(ops), list(batch[TEACHER_KEY]), batch["labels"],
                                    batch.get(TEACHER_LOGITS_KEY))
        n = int(batch["input_ids"].shape[0])
        return loss * n, n

    @torch.no_grad()
    def mlm_losses(self, batches, ops) -> tuple[float, float]:
        """(student path's, teacher's) masked-LM loss over the masked tokens of `batches`."""
        was = self.model.training
        self.model.eval()
        totals = [0.0, 0.0]
        count = 0
        device = next(self.model.parameters()).device
        try:
            for batch in batches:
                inputs = {k: v.to(device) for k, v in batch.items() if k in INPUT_KEYS}
                labels = batch["labels"].to(device)
                chosen = labels != -100
                n = int(chosen.sum())
                hidden = self.model.bert(**inputs, arch=tuple(ops)).last_hidden_state
                s = F.cross_entropy(self.model.cls(hidden[chosen]).float(), labels[chosen], reduction="sum")
                t = self.teacher(**inputs, labels=labels).loss * n
                totals[0] += float(s)
                totals[1] += float(t)
                count += n
        finally:
            self.model.train(was)
        return totals[0] / count, totals[1] / count

    def block_scorer(self, batches):
        """`scorer(block, ops) -> float` for `blockwise_search`: student block `block` with `ops`, fed
        the teacher's block input, vs the teacher's block output (normalised MSE), on `batches`
        (held-out batches of this task); cached."""
        cache: dict = {}
        device = next(self.model.parameters()).device
        layers = self.choice_layers()
        prepared = []
        with torch.no_grad():
            for batch in batches:
                inputs = {k: v.to(device) for k, v in batch.items() if k in INPUT_KEYS}
                states = list(batch[TEACHER_KEY].to(device))
                emb = self.embed(inputs)
                prepared.append((inputs, states, emb))

        @torch.no_grad()
        def score(block: int, ops: tuple) -> float:
            key = (block, tuple(ops))
            if key not in cache:
                self.model.eval()
                total = 0.0
                for inputs, states, emb in prepared:
                    attn_mask, token_mask, keep = _masks(inputs.get("attention_mask"), emb.dtype)
                    x = emb if block == 0 else self._down(block, states[block])
                    for layer, op in zip(layers[self.student_bounds[block]:self.student_bounds[block + 1]], ops):
                        x = layer(x, op, attn_mask, token_mask)
                    total += float(normalised_mse(self._up(block, x), states[block + 1], keep))
                cache[key] = total / len(prepared)
            return cache[key]

        return score

    def block_ranges(self) -> list[tuple[int, int]]:
        return [(self.student_bounds[j], self.student_bounds[j + 1]) for j in range(self.num_blocks)]


__all__ = ["DistillTask", "DistillBridges", "DISTILL_DEFAULTS", "distill_options", "frozen_teacher", "build_student",
           "principal_directions", "normalised_mse"]
