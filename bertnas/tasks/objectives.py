"""Pre-training objectives: masked language modelling and ELECTRA replaced-token detection.

All randomness (which tokens are masked, what replaces them, what the ELECTRA generator
samples) comes from the `torch.Generator` the loop passes in, so a resumed run draws exactly
what the uninterrupted run would have drawn.

ELECTRA's generator and discriminator share token embeddings. A narrower generator (ELECTRA's
own choice) would need a projection between widths, so here the generator keeps the hidden
size and is made small by depth instead: a fixed-arch `BertNasForMaskedLM` with a few layers
(e.g. [mha, ffn]) that uses the discriminator's `nn.Embedding` module itself (its MLM decoder is
tied to it). `ObjectiveOutput.inputs` is the batch the subnet saw (masked for MLM, corrupted
for ELECTRA): MAGIC-A runs the base subnet on exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F


@dataclass
class ObjectiveOutput:
    loss: torch.Tensor
    hidden_states: tuple  # the sampled subnet's per-layer hidden states (MAGIC-A aligns them)
    metrics: dict = field(default_factory=dict)  # scalars for the log (0-d tensors: read once per step)
    inputs: dict | None = None  # the batch as the subnet saw it (masked / corrupted), for the base forward


def mask_tokens(input_ids: torch.Tensor, tokenizer, generator: torch.Generator, mlm_probability: float = 0.15):
    """BERT masking: `mlm_probability` of the non-special tokens are chosen; of those 80 % become
    [MASK], 10 % a random token, 10 % stay. Returns (masked_input_ids, labels) with labels -100
    on positions that are not predicted. Special tokens ([PAD], [CLS], [SEP], ...) are never
    chosen; at least one token is, when the batch has any that may be."""
    if tokenizer.mask_token_id is None:
        raise ValueError("The tokenizer has no mask token; MLM needs one (e.g. [MASK])")
    device = input_ids.device
    special = torch.isin(input_ids, torch.tensor(tokenizer.all_special_ids, device=device))
    probability = torch.full(input_ids.shape, mlm_probability, device=device).masked_fill_(special, 0.0)
    chosen = torch.bernoulli(probability, generator=generator).bool()
    # Nothing to predict would make the loss 0/0 = NaN (likely with tiny batches): predict one
    # maskable token, drawn from the same generator. On the CPU the check is free; on a GPU it
    # would wait for the device every batch, so the fallback is drawn always and applied where due.
    if device.type == "cpu":
        if not chosen.any() and not special.all():
            scores = torch.rand(input_ids.shape, generator=generator, device=device).masked_fill_(special, -1.0)
            chosen.view(-1)[scores.view(-1).argmax()] = True
    else:
        scores = torch.rand(input_ids.shape, generator=generator, device=device).masked_fill_(special, -1.0)
        fallback = torch.zeros_like(chosen).view(-1).scatter_(0, scores.view(-1).argmax().reshape(1), True)
        chosen = chosen | (fallback.view_as(chosen) & ~chosen.any() & ~special.all())
    labels = input_ids.masked_fill(~chosen, -100)

    # torch.where, not boolean indexing: the same tokens, without the device-to-host read that
    # indexing by a mask needs on a GPU.
    to_mask = torch.bernoulli(torch.full(input_ids.shape, 0.8, device=device), generator=generator).bool() & chosen
    masked = input_ids.masked_fill(to_mask, tokenizer.mask_token_id)
    # Half of the remaining 20 %: a random token.
    to_random = torch.bernoulli(torch.full(input_ids.shape, 0.5, device=device), generator=generator).bool()
    to_random &= chosen & ~to_mask
    random_tokens = torch.randint(len(tokenizer), input_ids.shape, generator=generator, device=device)
    masked = torch.where(to_random, random_tokens, masked)
    return masked, labels


def _model_inputs(batch: dict, input_ids: torch.Tensor) -> dict:
    inputs = {"input_ids": input_ids}
    for key in ("attention_mask", "token_type_ids"):
        if batch.get(key) is not None:
            inputs[key] = batch[key]
    return inputs


class MLMObjective:
    """Masked-LM loss of the sampled subnet (`BertNasForMaskedLM`)."""

    def __init__(self, model, tokenizer, mlm_probability: float = 0.15):
        self.model = model
        self.tokenizer = tokenizer
        self.mlm_probability = mlm_probability

    def compute(self, batch: dict, arch, generator: torch.Generator, arch_weights=None) -> ObjectiveOutput:
        """`arch`: the path; or `arch=None, arch_weights={layer label: weight vector}`: the mixed
        ops of a search strategy."""
        masked, labels = mask_tokens(batch["input_ids"], self.tokenizer, generator, self.mlm_probability)
        inputs = _model_inputs(batch, masked)
        out = self.model(**inputs, labels=labels, arch=arch, arch_weights=arch_weights, output_hidden_states=True)
        return ObjectiveOutput(out.loss, out.hidden_states, {"mlm_loss": out.loss.detach()}, inputs=inputs)


def tie_generator_embeddings(discriminator, generator) -> None:
    """ELECTRA shares token embeddings between generator and discriminator: the generator uses
    the discriminator's embedding module (and its tied MLM decoder follows it)."""
    d_width = discriminator.config.hidden_size
    g_width = generator.config.hidden_size
    if d_width != g_width or discriminator.config.vocab_size != generator.config.vocab_size:
        raise ValueError(
            f"ELECTRA generator and discriminator share token embeddings, so they need the same hidden size and "
            f"vocabulary (discriminator {d_width}/{discriminator.config.vocab_size}, generator "
            f"{g_width}/{generator.config.vocab_size}); make the generator shallower instead of narrower"
        )
    shared = discriminator.bert.embeddings.word_embeddings
    generator.bert.embeddings.word_embeddings = shared
    generator.cls.predictions.decoder.weight = shared.weight


class ElectraObjective:
    """Replaced-token detection. The generator (a small fixed-arch `BertNasForMaskedLM`) fills the
    masked positions by sampling from its softmax; the discriminator (the supernet's sampled
    subnet, `BertNasForPreTraining`) predicts for every real token whether it was replaced.
    Loss = L_gen + disc_weight * L_disc (ELECTRA: disc_weight = 50)."""

    def __init__(self, discriminator, generator, tokenizer, disc_weight: float = 50.0, mlm_probability: float = 0.15):
        tie_generator_embeddings(discriminator, generator)
        self.discriminator = discriminator
        self.generator = generator
        self.tokenizer = tokenizer
        self.disc_weight = disc_weight
        self.mlm_probability = mlm_probability

    def corrupt(self, batch: dict, generator: torch.Generator) -> tuple[dict, torch.Tensor, object]:
        """(inputs with masked positions replaced by generator samples, 1 where a token changed,
        the generator's MLM output)."""
        original = batch["input_ids"]
        masked, labels = mask_tokens(original, self.tokenizer, generator, self.mlm_probability)
        gen_out = self.generator(**_model_inputs(batch, masked), labels=labels)
        chosen = labels != -100
        with torch.no_grad():  # sampling is not differentiated (ELECTRA trains the generator by MLM only)
            probs = F.softmax(gen_out.logits[chosen].float(), dim=-1)
            sampled = torch.multinomial(probs, 1, generator=generator).squeeze(-1) if probs.numel() else original[chosen]
        corrupted = original.clone()
        corrupted[chosen] = sampled
        replaced = (corrupted != original).long()  # a sample equal to the original counts as original
        return _model_inputs(batch, corrupted), replaced, gen_out

    def compute(self, batch: dict, arch, generator: torch.Generator, arch_weights=None) -> ObjectiveOutput:
        """`arch` / `arch_weights` of the discriminator, as for `MLMObjective.compute`."""
        inputs, replaced, gen_out = self.corrupt(batch, generator)
        mask = batch.get("attention_mask")
        real = mask.bool() if mask is not None else torch.ones_like(replaced, dtype=torch.bool)
        disc_out = self.discriminator(**inputs, labels=replaced, arch=arch, arch_weights=arch_weights,
                                      output_hidden_states=True)
        loss = gen_out.loss + self.disc_weight * disc_out.loss
        metrics = {
            "gen_loss": gen_out.loss.detach(),
            "disc_loss": disc_out.loss.detach(),
            "replaced_fraction": replaced.sum() / real.sum().clamp(min=1),  # of the real tokens
        }
        return ObjectiveOutput(loss, disc_out.hidden_states, metrics, inputs=inputs)
