"""Parameter-efficient fine-tuning and memory options: freezing, soft prompt tuning, LoRA, and device maps.

One flag group (`ParameterEfficientArguments`), used by `fine_tune_t5.py`:

- `--freeze encoder decoder embeddings` (any of them; also comma-separated) stops those parameters from training.
  `encoder` / `decoder` are the stacks' blocks and final layer norms (the relative position biases included).
  `embeddings` is the token embedding matrix `shared`, which T5 feeds to the encoder and the decoder, together with
  the output projection `lm_head`: transformers 5 always ties `lm_head` to `shared` (one tensor), so freezing the
  embedding freezes the output layer too; an untied `lm_head` is frozen with it, so the flag means the same for every
  checkpoint. Freezing `encoder` leaves the shared embedding trainable (it is also the decoder's input and output).
  The run folder holds the full model, as without freezing.
- `--prompt_tuning_length N`: soft prompt tuning (Lester et al. 2021, "The Power of Scale for Parameter-Efficient
  Prompt Tuning"): N learned vectors are prepended to the encoder's input embeddings, the attention mask is extended
  by N ones, and the whole model is frozen (N x d_model trainable parameters). Built on peft's PromptTuningConfig
  (SEQ_2_SEQ_LM, encoder only: `num_transformer_submodules=1`). The paper initialises the prompt from the embeddings
  of tokens sampled from the 5,000 most common ones; a SentencePiece vocabulary lists its pieces by decreasing
  score after the special tokens, so here the prompt starts from the embeddings of distinct tokens drawn (with the
  run's seed) from the lowest `--prompt_init_vocab` ids that are not special tokens or sentinels.
- `--lora_r R` (with `--lora_alpha`, `--lora_dropout`, `--lora_target_modules`, default T5's attention `q` and `v`):
  LoRA via peft; each adapted d_in x d_out matrix gains R x (d_in + d_out) trainable parameters, the rest is frozen.
  `--merge_lora` also writes the merged full model to `<output_dir>/merged/`.
- `--device_map auto` (or balanced, sequential, a device): loads the checkpoint with accelerate's big-model
  placement, layers spread over the visible GPUs (then CPU), for checkpoints too large for one card. Where the layers
  land on several devices, the model carries `hf_device_map` and the Trainer runs it model-parallel (one process; not
  with DDP/DeepSpeed/FSDP). Tested only on CPU, where everything lands on the one device.

Prompt tuning and LoRA runs save a peft adapter in the run folder (`adapter_config.json` +
`adapter_model.safetensors`, plus the tokenizer and peft's README.md model card) instead of `model.safetensors`;
checkpoints hold the adapter too, and `--resume_from_checkpoint` loads it into the adapter built at start-up (the
Trainer's peft path). `adapter_config.json` names the base checkpoint (`base_model_name_or_path`, made absolute for
a local folder). Passing the run folder as `--model_name_or_path` loads base + adapter again (`load_adapter_model`),
for `--do_eval` / `--do_predict` or to continue training the adapter. Elsewhere:
`PeftModel.from_pretrained(T5ForConditionalGeneration.from_pretrained(base), run_folder)`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from t5kit.args import ModelArguments, UsageError

logger = logging.getLogger(__name__)

FREEZE_PARTS = ("encoder", "decoder", "embeddings")
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
ADAPTER_CONFIG = "adapter_config.json"
MERGED_DIR = "merged"
PROMPT_INIT_VOCAB = 5000  # Lester et al. 2021 sample the initial prompt from the 5,000 most common tokens


def _split_list(values) -> list[str]:
    """["encoder,embeddings"] or ["encoder", "embeddings"] or "encoder,embeddings" -> ["encoder", "embeddings"]."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [part.strip() for value in values for part in str(value).split(",") if part.strip()]


@dataclass
class ParameterEfficientArguments:
    """What trains (freezing, prompt tuning, LoRA) and where the model is placed (device map)."""

    freeze: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Freeze parts of the model: encoder, decoder, embeddings (several, space- or comma-separated). "
            "embeddings = the shared token embedding and the lm_head tied to it; encoder/decoder = their blocks "
            "and final layer norms, not the shared embedding."
        },
    )
    prompt_tuning_length: int | None = field(
        default=None,
        metadata={
            "help": "Soft prompt tuning (Lester et al. 2021): learn this many vectors prepended to the encoder "
            "input; the model itself is frozen. Saves a peft adapter."
        },
    )
    prompt_init_vocab: int = field(
        default=PROMPT_INIT_VOCAB,
        metadata={
            "help": "Initialise the prompt from embeddings of tokens drawn from the lowest N non-special ids (the "
            "most frequent pieces of a SentencePiece vocabulary; the paper samples the 5000 most common)."
        },
    )
    lora_r: int | None = field(
        default=None, metadata={"help": "LoRA rank (peft); the model is frozen and only the adapters train."}
    )
    lora_alpha: float | None = field(
        default=None, metadata={"help": "LoRA scaling alpha (updates scaled by alpha/r). Default: 2 x lora_r."}
    )
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q", "v"],
        metadata={"help": "Linear layers LoRA adapts, by name (T5: q k v o wi wi_0 wi_1 wo). Default: q v."},
    )
    merge_lora: bool = field(
        default=False,
        metadata={"help": "Also save the LoRA-merged full model to <output_dir>/merged (loads without peft)."},
    )
    device_map: str | None = field(
        default=None,
        metadata={
            "help": "Place the checkpoint's layers across devices at load time (accelerate big-model loading): "
            "auto, balanced, balanced_low_0, sequential, or one device (cpu, cuda:0). One process only."
        },
    )

    def __post_init__(self):
        self.freeze = _split_list(self.freeze)
        unknown = [part for part in self.freeze if part not in FREEZE_PARTS]
        if unknown:
            raise UsageError(f"--freeze: unknown part(s) {', '.join(unknown)}; choose from {', '.join(FREEZE_PARTS)}")
        self.freeze = sorted(set(self.freeze), key=FREEZE_PARTS.index)
        self.lora_target_modules = _split_list(self.lora_target_modules)
        if self.prompt_tuning_length is not None and self.prompt_tuning_length < 1:
            raise UsageError(f"--prompt_tuning_length must be >= 1, got {self.prompt_tuning_length}")
        if self.prompt_init_vocab < 1:
            raise UsageError(f"--prompt_init_vocab must be >= 1, got {self.prompt_init_vocab}")
        if self.lora_r is not None and self.lora_r < 1:
            raise UsageError(f"--lora_r must be >= 1, got {self.lora_r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise UsageError(f"--lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora_r is None and self.lora_alpha is not None:
            raise UsageError("--lora_alpha needs --lora_r (LoRA is off)")
        if self.lora_r is not None and self.lora_alpha is None:
            self.lora_alpha = 2.0 * self.lora_r
        if not self.lora_target_modules:
            raise UsageError("--lora_target_modules is empty")
        methods = [
            name
            for name, on in (
                ("--freeze", self.freeze),
                ("--prompt_tuning_length", self.prompt_tuning_length),
                ("--lora_r", self.lora_r),
            )  # fmt: skip
            if on
        ]
        if len(methods) > 1:
            raise UsageError(
                f"{' and '.join(methods)} cannot be combined: prompt tuning and LoRA already freeze the whole model "
                "and train only their own parameters; choose one method"
            )
        if set(self.freeze) == set(FREEZE_PARTS):
            raise UsageError("--freeze encoder decoder embeddings leaves nothing to train")
        if self.device_map is not None:
            value = self.device_map.strip()
            if value not in DEVICE_MAP_STRATEGIES:
                try:
                    torch.device(value)
                except (RuntimeError, ValueError):
                    raise UsageError(
                        f"--device_map {value!r}: use {', '.join(DEVICE_MAP_STRATEGIES)} or one device (cpu, cuda:0)"
                    ) from None
            self.device_map = value

    @property
    def method(self) -> str:
        if self.lora_r:
            return "lora"
        if self.prompt_tuning_length:
            return "prompt_tuning"
        if self.freeze:
            return "freeze:" + ",".join(self.freeze)
        return "full"


def read_adapter_config(path: str | None) -> dict | None:
    """The peft adapter config of a local run folder, or None when `path` is no adapter folder."""
    if not path:
        return None
    file = Path(path) / ADAPTER_CONFIG
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UsageError(f"{file}:{err.lineno}: not valid JSON ({err.msg})") from None


def validate(args: ParameterEfficientArguments, model_args: ModelArguments, train_args) -> None:
    """Checks that need the other flag groups; run before any data or model is loaded."""
    adapter = read_adapter_config(model_args.model_name_or_path)
    if (args.lora_r or args.prompt_tuning_length) and not model_args.model_name_or_path:
        raise UsageError(
            "--lora_r / --prompt_tuning_length adapt a trained checkpoint and freeze it: pass --model_name_or_path "
            "(a frozen from-scratch model would stay random)"
        )
    if model_args.random_init and (args.lora_r or args.prompt_tuning_length or adapter is not None):
        raise UsageError(
            "--random_init with LoRA, prompt tuning or an adapter folder would train a few parameters of a random "
            "model; fine-tune the random init fully (drop --lora_r / --prompt_tuning_length)"
        )
    if adapter is not None and (args.lora_r or args.prompt_tuning_length or args.freeze):
        raise UsageError(
            f"--model_name_or_path {model_args.model_name_or_path} is a {adapter.get('peft_type', 'peft')} adapter "
            "folder; it is loaded with its base model and trains as it was saved: drop --freeze, --lora_r and "
            "--prompt_tuning_length"
        )
    if args.merge_lora and not args.lora_r and (adapter is None or adapter.get("peft_type") != "LORA"):
        raise UsageError("--merge_lora needs LoRA: pass --lora_r, or a LoRA adapter folder as --model_name_or_path")
    if args.device_map is not None:
        if not model_args.model_name_or_path:
            raise UsageError("--device_map places a checkpoint at load time: it needs --model_name_or_path")
        if train_args.world_size > 1 or train_args.deepspeed or train_args.fsdp:
            raise UsageError(
                "--device_map spreads one model copy over the devices of one process (model parallelism); it cannot "
                "be combined with several processes, --deepspeed or --fsdp (which shard or replicate the model)"
            )


def freeze_parts(model, parts: list[str]) -> None:
    """Sets requires_grad=False on the named parts (see the module docstring for what each part covers)."""
    embedding_ids = {id(model.shared.weight), id(model.get_output_embeddings().weight)}
    for part in parts:
        if part == "embeddings":
            model.shared.weight.requires_grad_(False)
            model.get_output_embeddings().weight.requires_grad_(False)
            continue
        stack = model.encoder if part == "encoder" else model.decoder
        for param in stack.parameters():
            if id(param) not in embedding_ids:
                param.requires_grad_(False)


def prompt_init_token_ids(tokenizer, vocab_limit: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` token ids drawn from the lowest `vocab_limit` ids that are no special token or sentinel; distinct
    where the pool is large enough."""
    special = set(tokenizer.all_special_ids)
    special.update(tokenizer.convert_tokens_to_ids(getattr(tokenizer, "extra_special_tokens", None) or []))
    special.update(i for token, i in tokenizer.get_vocab().items() if token.startswith("<extra_id_"))
    pool = torch.tensor([i for i in range(min(vocab_limit, len(tokenizer))) if i not in special], dtype=torch.long)
    if len(pool) == 0:
        raise UsageError(f"--prompt_init_vocab {vocab_limit}: no regular token among the lowest ids")
    if count <= len(pool):
        return pool[torch.randperm(len(pool), generator=generator)[:count]]
    return pool[torch.randint(len(pool), (count,), generator=generator)]


def add_prompt_tuning(model, tokenizer, length: int, init_vocab: int, seed: int):
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    config = PromptTuningConfig(
        task_type=TaskType.SEQ_2_SEQ_LM,
        num_virtual_tokens=length,
        num_transformer_submodules=1,  # encoder prompt only (peft's seq2seq default would add an unused second one)
        prompt_tuning_init=PromptTuningInit.RANDOM,  # replaced just below by vocabulary embeddings
    )
    peft_model = get_peft_model(model, config)
    ids = prompt_init_token_ids(tokenizer, init_vocab, length, torch.Generator().manual_seed(seed))
    embedding = peft_model.prompt_encoder[peft_model.active_adapter].embedding
    with torch.no_grad():
        weights = model.get_input_embeddings().weight
        embedding.weight.copy_(weights[ids.to(weights.device)].to(embedding.weight.device, embedding.weight.dtype))
    return peft_model


def add_lora(model, args: ParameterEfficientArguments):
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_2_SEQ_LM,
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=args.lora_target_modules,
        bias="none",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as err:
        names = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise UsageError(
            f"--lora_target_modules {' '.join(args.lora_target_modules)}: {str(err).splitlines()[0]} "
            f"(linear layers of this model: {' '.join(names)})"
        ) from None


def _absolute_base_path(peft_model, name_or_path: str) -> None:
    """adapter_config.json names the base checkpoint; a local folder is written as an absolute path."""
    if Path(name_or_path).is_dir():
        for config in peft_model.peft_config.values():
            config.base_model_name_or_path = str(Path(name_or_path).resolve())


def load_adapter_model(model_args: ModelArguments, tokenizer, args: ParameterEfficientArguments, trainable: bool):
    """Base checkpoint (from adapter_config.json) + the adapter in --model_name_or_path."""
    from peft import PeftModel

    from t5kit.modeling import load_model

    folder = model_args.model_name_or_path
    base = read_adapter_config(folder).get("base_model_name_or_path")
    if not base:
        raise UsageError(f"{Path(folder) / ADAPTER_CONFIG}: names no base_model_name_or_path to load the adapter onto")
    base_args = dataclasses.replace(model_args, model_name_or_path=base)
    model = load_model(base_args, tokenizer, default_dropout=None, device_map=args.device_map)
    prompt_learning = read_adapter_config(folder).get("peft_type") in ("PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING")
    # peft 0.21 refuses to load a prompt-learning adapter as trainable ("Cannot set a prompt learning adapter to
    # trainable when loading pretrained adapter"): load it frozen, then let its prompt train again.
    peft_model = PeftModel.from_pretrained(model, folder, is_trainable=trainable and not prompt_learning)
    if trainable and prompt_learning:
        peft_model.peft_config[peft_model.active_adapter].inference_mode = False
        peft_model.prompt_encoder.requires_grad_(True)
    if not trainable:
        peft_model.requires_grad_(False)
    _absolute_base_path(peft_model, base)
    return peft_model


def build_model(model_args: ModelArguments, tokenizer, args: ParameterEfficientArguments, train_args):
    """The model to fine-tune or evaluate: loaded (device map where asked), then frozen or wrapped in peft."""
    from t5kit.modeling import load_model

    if read_adapter_config(model_args.model_name_or_path) is not None:
        return load_adapter_model(model_args, tokenizer, args, trainable=train_args.do_train)
    model = load_model(model_args, tokenizer, default_dropout=None, device_map=args.device_map)
    if args.freeze:
        freeze_parts(model, args.freeze)
    elif args.prompt_tuning_length:
        model = add_prompt_tuning(model, tokenizer, args.prompt_tuning_length, args.prompt_init_vocab, train_args.seed)
    elif args.lora_r:
        model = add_lora(model, args)
    if model_args.model_name_or_path and is_peft_model(model):
        _absolute_base_path(model, model_args.model_name_or_path)
    return model


def is_peft_model(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, total) over unique tensors (T5's lm_head and embedding are one)."""
    unique = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in unique if p.requires_grad), sum(p.numel() for p in unique)


def encoder_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """(seq2seq model, encoder states, their attention mask) for scoring targets with `encoder_outputs=`.

    With soft prompt tuning the prompt is prepended here and the mask extended, as peft does inside forward and
    generate; the returned seq2seq model is the T5 under the peft wrapper (LoRA layers stay active in it).
    """
    if not is_peft_model(model):
        encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return model, encoded, attention_mask
    base = model.get_base_model()
    config = model.active_peft_config
    embeds = base.get_input_embeddings()(input_ids)
    if config.is_prompt_learning:
        if config.peft_type != "PROMPT_TUNING":
            raise NotImplementedError(f"rank eval supports prompt tuning and LoRA, not {config.peft_type}")
        prompts = model.get_prompt(batch_size=input_ids.shape[0])[:, : config.num_virtual_tokens]
        embeds = torch.cat((prompts.to(embeds.dtype), embeds), dim=1)
        ones = attention_mask.new_ones(input_ids.shape[0], config.num_virtual_tokens)
        attention_mask = torch.cat((ones, attention_mask), dim=1)
    encoded = base.get_encoder()(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
    return base, encoded, attention_mask


def save_merged(model, out: Path, tokenizer) -> Path:
    """The LoRA-merged full model (+ tokenizer) in <out>/merged. Merges in place (no second copy of a large model):
    call it last, after every evaluation of the adapter model."""
    merged = model.merge_and_unload()
    folder = Path(out) / MERGED_DIR
    merged.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def method_of(model, args: ParameterEfficientArguments) -> str:
    """full, freeze:<parts>, lora, prompt_tuning, or adapter:<peft type> for an adapter folder loaded as the model."""
    if is_peft_model(model) and not (args.lora_r or args.prompt_tuning_length):
        return "adapter:" + str(getattr(model.active_peft_config.peft_type, "value", "peft")).lower()
    return args.method


def describe(model) -> str:
    trainable, total = parameter_counts(model)
    return f"trainable parameters: {trainable:,} of {total:,} ({100.0 * trainable / max(total, 1):.4f}%)"
