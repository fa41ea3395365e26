"""What every supernet model class shares (BERT, NB201, DARTS, CNN).

- `is_supernet`: `config.arch is None` (a fixed-arch model holds one candidate per choice);
- `named_choices()`: the choice modules (label, candidates, `forward_mixed`,
  `candidate_parameters`) with their qualified names, in forward order;
- `candidate_parameters()`: `{(label, candidate): [(qualified name, Parameter), ...]}`, one key
  shape for every space (a label shared by several cells collects all of their parameters);
- `extract(arch)`: a fixed-arch model of the same class holding copies of the path's weights (a
  state-dict subset: the fixed model keeps each candidate under the supernet's key);
- `weights_by_label(arch_weights, labels)`: `arch_weights` as a mapping label -> 1-D weight
  tensor (the form every model's `forward(arch_weights=...)` takes; a sequence in choice order is
  the older form, still read, with a DeprecationWarning).

The model class provides `config` (with `arch`), `resolve_arch(arch)` and, where `extract` needs
more than `type(self)(config)`, the hooks `_config_arch`, `_new_like` and `_after_extract`.

Copied next to exported weights with the modeling files (they import it relatively), so it
imports nothing of bertnas.
"""

import copy
import warnings
from collections.abc import Mapping

CHOICE_PROTOCOL = ("label", "candidates", "forward_mixed", "candidate_parameters")


def is_choice_module(module) -> bool:
    """Whether `module` follows the choice protocol (a layer choice or an input choice)."""
    return all(hasattr(module, name) for name in CHOICE_PROTOCOL)


class SupernetMixin:
    """`is_supernet`, `named_choices`, `candidate_parameters`, `extract` and `weights_by_label`
    for a `PreTrainedModel` whose config has `arch` (None: the supernet)."""

    @property
    def is_supernet(self) -> bool:
        return self.config.arch is None

    def named_choices(self):
        """(qualified name, module) of every choice module, in module order."""
        for name, module in self.named_modules():
            if module is not self and is_choice_module(module):
                yield name, module

    def candidate_parameters(self) -> dict:
        """`{(label, candidate): [(qualified name, parameter), ...]}` over every choice module and
        every candidate it holds; names are those of `model.named_parameters()`. Cells that share
        a label (NB201, DARTS) add their parameters to the same entry."""
        found: dict = {}
        for name, module in self.named_choices():
            for candidate, params in module.candidate_parameters(f"{name}.").items():
                found.setdefault((module.label, candidate), []).extend(params)
        return found

    # -- extract ------------------------------------------------------------------------------
    def _config_arch(self, resolved):
        """`config.arch` of the fixed model for the value `resolve_arch` returned."""
        return list(resolved)

    def _new_like(self, config):
        """An empty model of this class for `config` (BERT's backbone adds its pooler flag)."""
        return type(self)(config)

    def _after_extract(self, model) -> None:
        """Copy what is not in the state dict (DARTS: the drop-path probability)."""

    def extract(self, arch):
        """A fixed-arch model of the same class holding copies of the path's weights (and
        BatchNorm statistics: recalibrate the path on the supernet first where it has any)."""
        config = copy.deepcopy(self.config)
        config.arch = self._config_arch(self.resolve_arch(arch))
        model = self._new_like(config)
        wanted = model.state_dict().keys()
        model.load_state_dict({k: v.detach().clone() for k, v in self.state_dict().items() if k in wanted},
                              strict=True)
        self._after_extract(model)
        return model.to(self.device).train(self.training)

    # -- mixed ops ------------------------------------------------------------------------------
    def weights_by_label(self, arch_weights, labels, required=None, unit: str = "choice") -> dict:
        """`arch_weights` as `{label: weights}` over `labels` (the choice labels in order).

        A mapping is read by label: a label it lacks is an error when `required` (default: all
        of `labels`) holds it, an unknown label always. A sequence in label order (a list of
        tensors, or a 2-D tensor with one row per choice) is the older form: read the same way,
        with a DeprecationWarning."""
        labels = list(labels)
        required = labels if required is None else list(required)
        if not isinstance(arch_weights, Mapping):
            warnings.warn(
                "arch_weights as a sequence in choice order is deprecated and will be removed in the next "
                f"release; pass a mapping label -> 1-D weights, e.g. {{{labels[0]!r}: w0, ...}}",
                DeprecationWarning, stacklevel=4)
            weights = list(arch_weights)
            if len(weights) != len(labels):
                raise ValueError(f"arch_weights has {len(weights)} entries but the "
                                 f"{'supernet' if self.is_supernet else 'model'} has {len(labels)} {unit}s "
                                 f"({labels[0]} .. {labels[-1]}); give one 1-D tensor per {unit}")
            return dict(zip(labels, weights))
        unknown = [label for label in arch_weights if label not in labels]
        if unknown:
            raise ValueError(f"arch_weights has unknown labels {unknown}; the choices are {labels[0]} .. {labels[-1]}")
        missing = [label for label in required if label not in arch_weights]
        if missing:
            raise ValueError(f"arch_weights has no entry for {', '.join(missing)}: give one 1-D tensor per choice")
        return {label: arch_weights[label] for label in labels if label in arch_weights}


__all__ = ["SupernetMixin", "is_choice_module", "CHOICE_PROTOCOL"]
