"""Model construction: T5 v1.1 size presets, from-scratch configs, and continued checkpoints."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase, T5Config, T5ForConditionalGeneration
from transformers.activations import GELUTanh, NewGELUActivation
from transformers.models.t5.modeling_t5 import T5DenseGatedActDense

from t5kit import attention
from t5kit.args import ModelArguments, UsageError

logger = logging.getLogger(__name__)

VOCAB_MULTIPLE = 128  # pad the embedding matrix to a multiple of 128 (T5 pads 32100 -> 32128) for fast matmuls
PRETRAIN_DROPOUT = 0.0  # T5 v1.1 and nanoT5 pre-train without dropout

# T5 v1.1 shapes (gated-GELU feed-forward). small/base/large follow google/t5-v1_1-*; tiny is for tests; mini
# (~20M parameters at a 32k vocabulary) is the CPU benchmark size.
# transformers 5 always ties T5's lm_head to the input embedding (T5Config forces tie_word_embeddings=True and reads
# tie_word_embeddings=False only as "do not scale decoder outputs"). A tied head without T5's d_model**-0.5 output
# scaling starts with logits of std ~sqrt(d_model) and a first loss of ~35 nats on `tiny` (measured), so presets
# keep the scaling, as original T5 does.
PRESETS: dict[str, dict] = {
    "tiny": dict(d_model=64, d_ff=128, d_kv=16, num_heads=4, num_layers=2, num_decoder_layers=2),
    "mini": dict(d_model=256, d_ff=1024, d_kv=32, num_heads=8, num_layers=4, num_decoder_layers=4),
    "small": dict(d_model=512, d_ff=1024, d_kv=64, num_heads=6, num_layers=8, num_decoder_layers=8),
    "base": dict(d_model=768, d_ff=2048, d_kv=64, num_heads=12, num_layers=12, num_decoder_layers=12),
    "large": dict(d_model=1024, d_ff=2816, d_kv=64, num_heads=16, num_layers=24, num_decoder_layers=24),
}
V1_1_COMMON = dict(
    feed_forward_proj="gated-gelu",
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    layer_norm_epsilon=1e-6,
    initializer_factor=1.0,
)


def padded_vocab_size(tokenizer_size: int) -> int:
    return int(math.ceil(tokenizer_size / VOCAB_MULTIPLE) * VOCAB_MULTIPLE)


def build_config(name_or_path: str, tokenizer: PreTrainedTokenizerBase, dropout_rate: float) -> T5Config:
    """A from-scratch config: a preset name or a config.json path, with the vocabulary sized for `tokenizer`."""
    if name_or_path in PRESETS:
        values = {**V1_1_COMMON, **PRESETS[name_or_path]}
    else:
        path = Path(name_or_path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise UsageError(
                f"--model_config {name_or_path}: neither a preset ({', '.join(PRESETS)}) nor a config.json file"
            )
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise UsageError(f"--model_config {path}:{err.lineno}: not valid JSON ({err.msg})") from None
    values.update(
        vocab_size=padded_vocab_size(len(tokenizer)),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        dropout_rate=dropout_rate,
    )
    try:
        return T5Config(**values)
    except (TypeError, ValueError) as err:
        raise UsageError(f"--model_config {name_or_path}: invalid T5 config ({err})") from None


def load_model(
    model_args: ModelArguments,
    tokenizer: PreTrainedTokenizerBase,
    default_dropout: float | None,
    device_map: str | None = None,
):
    """Builds or loads the model. `default_dropout` is used when --dropout_rate is unset (None keeps a checkpoint's).
    `device_map` (checkpoints only) places the layers across devices at load time (accelerate big-model loading)."""
    dropout = model_args.dropout_rate if model_args.dropout_rate is not None else default_dropout
    attention.register()
    if model_args.model_name_or_path and model_args.random_init:
        return _random_init_of(model_args, dropout)
    if model_args.model_name_or_path:
        overrides = {} if dropout is None else {"dropout_rate": dropout}
        if device_map is not None:
            overrides["device_map"] = device_map
        try:
            model = T5ForConditionalGeneration.from_pretrained(
                model_args.model_name_or_path, attn_implementation=model_args.attn_implementation, **overrides
            )
        except OSError as err:
            raise UsageError(
                f"--model_name_or_path {model_args.model_name_or_path}: cannot load ({str(err).splitlines()[0]})"
            ) from None
        if len(tokenizer) > model.config.vocab_size:
            raise UsageError(
                f"the tokenizer has {len(tokenizer)} tokens but the model's vocabulary only {model.config.vocab_size}"
            )
        speed_up_feed_forward(model)
        return model
    if not model_args.model_config:
        raise UsageError("set --model_name_or_path (continue a checkpoint) or --model_config (train from scratch)")
    config = build_config(model_args.model_config, tokenizer, PRETRAIN_DROPOUT if dropout is None else dropout)
    config._attn_implementation = model_args.attn_implementation
    model = T5ForConditionalGeneration(config)
    speed_up_feed_forward(model)
    return model


def _random_init_of(model_args: ModelArguments, dropout: float | None):
    """A model with the config of --model_name_or_path (a run folder, checkpoint or hub name) and fresh weights,
    initialised from the seed that start_run set."""
    try:
        config = T5Config.from_pretrained(model_args.model_name_or_path)
    except OSError as err:
        raise UsageError(
            f"--model_name_or_path {model_args.model_name_or_path} (--random_init): cannot read its config.json "
            f"({str(err).splitlines()[0]})"
        ) from None
    if dropout is not None:
        config.dropout_rate = dropout
    config._attn_implementation = model_args.attn_implementation
    model = T5ForConditionalGeneration(config)
    logger.info("random init with the architecture of %s (no pre-trained weights)", model_args.model_name_or_path)
    speed_up_feed_forward(model)
    return model


class _GatedFeedForward(T5DenseGatedActDense):
    """T5's gated feed-forward without its cast of the d_ff-wide activations to `wo`'s dtype under autocast. With
    fp32 weights under bf16 autocast that cast writes an fp32 copy which the `wo` matmul at once casts back to bf16
    (the same values: the round trip is exact), and backward pays for both casts again. Outside autocast the
    original forward runs: its cast exists for int8 checkpoints that keep `wo` in fp32."""

    def forward(self, hidden_states):
        if not torch.is_autocast_enabled(hidden_states.device.type):
            return super().forward(hidden_states)
        hidden_states = self.act(self.wi_0(hidden_states)) * self.wi_1(hidden_states)
        return self.wo(self.dropout(hidden_states))


def speed_up_feed_forward(model) -> None:
    """Two runtime changes to T5's feed-forward layers, neither recorded in config.json nor changing what is computed:

    - T5 v1.1's `gelu_new` activation becomes PyTorch's fused tanh-approximation GELU (transformers' GELUTanh), the
      same function up to float rounding. `gelu_new` is seven elementwise kernels, each a pass over the d_ff-wide
      activations (as many again in backward): on CPU that measured 7% of an fp32 `mini` pre-training step and 30%
      of an fp32 RTE evaluation (no measurable change in bf16).
    - Gated layers skip the redundant fp32 round trip under autocast (_GatedFeedForward): 2% of a bf16 step.
    """
    for module in model.modules():
        if type(module) is T5DenseGatedActDense:
            module.__class__ = _GatedFeedForward
        if isinstance(getattr(module, "act", None), NewGELUActivation):
            module.act = GELUTanh()


def parameter_summary(model) -> list[tuple[str, int, int]]:
    """(module, total, trainable) parameter counts per top-level module, plus a total row."""
    rows = []
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft wrapper: its T5 first
    children = list(base.named_children())
    if base is not model:  # then the wrapper's own modules (a soft prompt), without the T5 weights it refers to
        children += [(name, m) for name, m in model.named_children() if name not in ("base_model", "word_embeddings")]
    for name, module in children:
        params = list(module.parameters())
        rows.append((name, sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)))
    # lm_head/shared may be tied: count unique parameters for the total.
    unique = {id(p): p for p in model.parameters()}.values()
    rows.append(("total", sum(p.numel() for p in unique), sum(p.numel() for p in unique if p.requires_grad)))
    return rows


def format_parameter_summary(model) -> str:
    lines = [f"{'module':<16}{'parameters':>14}{'trainable':>14}"]
    lines += [f"{name:<16}{total:>14,}{trainable:>14,}" for name, total, trainable in parameter_summary(model)]
    return "\n".join(lines)
