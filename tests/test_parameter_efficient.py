"""Freezing, soft prompt tuning, LoRA and --device_map through fine_tune_t5.main, on a real SST-2 slice.

A tiny model is first fine-tuned fully (the "base checkpoint"); each method then starts from it. Expected trainable
parameter counts are computed here from config.json (T5 v1.1 shapes), not taken from the code under test; frozen
weights are compared before and after training; adapters are reloaded and the merged LoRA model is checked against
the adapter model, weight by weight and output by output.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
from pathlib import Path
from unittest import mock

import torch
from absl.testing import absltest, parameterized
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoTokenizer, T5ForConditionalGeneration

import fine_tune_t5
from t5kit import parameter_efficient
from t5kit.args import UsageError
from tests.helpers import SHARED_DATA, ModuleScratch

GLUE_DIR = SHARED_DATA / "glue"
COMMON = [
    "--benchmark", "glue", "--dataset_name", "sst2", "--data_dir", str(GLUE_DIR), "--per_device_train_batch_size", "16",
    "--per_device_eval_batch_size", "32", "--logging_steps", "5", "--learning_rate", "3e-3", "--seed", "0",
    "--report_to", "none", "--disable_tqdm", "True", "--max_train_samples", "200", "--max_eval_samples", "32",
]  # fmt: skip
PROMPT_LENGTH = 5
LORA_R = 4

SCRATCH = ModuleScratch("test_parameter_efficient_")
setUpModule, tearDownModule = SCRATCH.set_up, SCRATCH.tear_down
module_tmp = SCRATCH.path


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@functools.cache
def base_checkpoint() -> Path:
    """A tiny T5 (own 500-token tokenizer) fully fine-tuned for a few steps: the checkpoint every method adapts."""
    out = module_tmp() / "base"
    fine_tune_t5.main([*COMMON, "--model_config", "tiny", "--vocab_size", "500", "--do_train", "--max_steps", "5",
                       "--eval_strategy", "no", "--output_dir", str(out)])  # fmt: skip
    return out


@contextlib.contextmanager
def built_models():
    """Records (model, state dict copy right after it was built) for each model fine_tune_t5.main builds."""
    built = []
    original = parameter_efficient.build_model

    def build(*args, **kwargs):
        model = original(*args, **kwargs)
        built.append((model, {name: t.detach().clone() for name, t in model.state_dict().items()}))
        return model

    with mock.patch.object(parameter_efficient, "build_model", build):
        yield built


def run(name: str, *args: str, model: Path | None = None) -> tuple[Path, dict, list]:
    """fine_tune_t5.main from `model` (default: the base checkpoint): run folder, results, built models."""
    out = module_tmp() / name
    with built_models() as built:
        results = fine_tune_t5.main([*COMMON, "--model_name_or_path", str(model or base_checkpoint()), *args,
                                     "--output_dir", str(out)])  # fmt: skip
    return out, results, built


# Parameter counts of a T5 v1.1-shaped config (gated feed-forward, no biases, RMS layer norms with a weight only).
def attention(c):
    return 4 * c["d_model"] * c["num_heads"] * c["d_kv"]


def feed_forward(c):
    return (3 if c["feed_forward_proj"].startswith("gated") else 2) * c["d_model"] * c["d_ff"]


def encoder_count(c):
    per_layer = attention(c) + feed_forward(c) + 2 * c["d_model"]
    return c["num_layers"] * per_layer + c["relative_attention_num_buckets"] * c["num_heads"] + c["d_model"]


def decoder_count(c):
    per_layer = 2 * attention(c) + feed_forward(c) + 3 * c["d_model"]
    return c["num_decoder_layers"] * per_layer + c["relative_attention_num_buckets"] * c["num_heads"] + c["d_model"]


def embedding_count(c):
    return c["vocab_size"] * c["d_model"]  # lm_head is tied to it: one tensor


def total_count(c):
    return embedding_count(c) + encoder_count(c) + decoder_count(c)


def dev_inputs(tokenizer, n: int = 8):
    lines = (GLUE_DIR / "SST-2" / "dev.tsv").read_text(encoding="utf-8").split("\n")[1 : n + 1]
    texts = [f"sst2 sentence: {line.split(chr(9))[0]}" for line in lines]
    return tokenizer(texts, return_tensors="pt", padding=True)


class FreezeTest(absltest.TestCase):
    """--freeze encoder embeddings, loaded with --device_map auto. On a CPU-only machine accelerate's placement puts
    every layer on cpu (one device: no dispatch hooks, no hf_device_map); a split over several GPUs is not tested."""

    @classmethod
    def setUpClass(cls):
        cls.config = read_json(base_checkpoint() / "config.json")
        loader = T5ForConditionalGeneration.from_pretrained
        with mock.patch.object(T5ForConditionalGeneration, "from_pretrained", wraps=loader) as spy:
            cls.out, cls.results, built = run("freeze", "--do_train", "--do_eval", "--eval_strategy", "no",
                                              "--max_steps", "5", "--freeze", "encoder", "embeddings",
                                              "--device_map", "auto")  # fmt: skip
        cls.load_kwargs = spy.call_args.kwargs
        cls.model, cls.before = built[0]

    def test_trainable_count_is_the_decoder(self):
        self.assertEqual(self.results["parameter_efficient"], "freeze:encoder,embeddings")
        self.assertEqual(self.results["trainable_parameters"], decoder_count(self.config))
        self.assertEqual(self.results["total_parameters"], total_count(self.config))

    def test_frozen_weights_did_not_change_and_the_rest_did(self):
        after = self.model.state_dict()
        saved = load_file(self.out / "model.safetensors")
        base = load_file(base_checkpoint() / "model.safetensors")
        changed = []
        for name, tensor in after.items():
            frozen = name.startswith("encoder.") or name in ("shared.weight", "lm_head.weight")
            self.assertTrue(torch.equal(self.before[name], base[name]) if name in base else True, name)
            if frozen:
                self.assertTrue(torch.equal(tensor, self.before[name]), name)
                if name in saved:
                    self.assertTrue(torch.equal(saved[name], base[name]), name)
            elif not torch.equal(tensor, self.before[name]):
                changed.append(name)
        decoder = [n for n in after if n.startswith("decoder.") and n != "decoder.embed_tokens.weight"]
        self.assertCountEqual(changed, decoder)

    def test_device_map_loaded_and_trained(self):
        self.assertEqual(self.load_kwargs["device_map"], "auto")
        self.assertEqual({p.device.type for p in self.model.parameters()}, {"cpu"})
        self.assertIn("train_loss", self.results)
        self.assertTrue((self.out / "model.safetensors").is_file())  # a frozen run saves the full model

    def test_each_part_alone(self):
        model = T5ForConditionalGeneration.from_pretrained(base_checkpoint())
        expected = {
            "encoder": total_count(self.config) - encoder_count(self.config),
            "decoder": total_count(self.config) - decoder_count(self.config),
            "embeddings": total_count(self.config) - embedding_count(self.config),
        }
        for part, trainable in expected.items():
            model.requires_grad_(True)
            parameter_efficient.freeze_parts(model, [part])
            self.assertEqual(parameter_efficient.parameter_counts(model), (trainable, total_count(self.config)), part)


class PromptTuningTest(absltest.TestCase):
    """--prompt_tuning_length 5, scored by rank eval in the run; the adapter folder evaluated again both ways."""

    @classmethod
    def setUpClass(cls):
        cls.config = read_json(base_checkpoint() / "config.json")
        cls.out, cls.results, built = run("prompt", "--do_train", "--do_eval", "--eval_strategy", "no",
                                          "--max_steps", "5", "--learning_rate", "0.3", "--eval_mode", "rank",
                                          "--prompt_tuning_length", str(PROMPT_LENGTH))  # fmt: skip
        cls.model, cls.before = built[0]
        # The adapter folder as --model_name_or_path: base + prompt loaded back, evaluated only.
        cls.eval_runs = {
            mode: run(f"prompt-eval-{mode}", "--do_eval", "--eval_mode", mode, model=cls.out)[0]
            for mode in ("rank", "generate")
        }

    def test_trainable_count_is_the_prompt(self):
        self.assertEqual(self.results["parameter_efficient"], "prompt_tuning")
        self.assertEqual(self.results["trainable_parameters"], PROMPT_LENGTH * self.config["d_model"])
        self.assertEqual(self.results["total_parameters"],
                         total_count(self.config) + PROMPT_LENGTH * self.config["d_model"])  # fmt: skip

    def test_the_model_itself_did_not_change(self):
        base = T5ForConditionalGeneration.from_pretrained(base_checkpoint()).state_dict()
        after = self.model.get_base_model().state_dict()
        for name, tensor in base.items():
            self.assertTrue(torch.equal(after[name], tensor), name)

    def test_prompt_starts_from_distinct_low_id_token_embeddings_and_trains(self):
        key = next(k for k in self.before if k.startswith("prompt_encoder."))
        initial = self.before[key]
        self.assertEqual(tuple(initial.shape), (PROMPT_LENGTH, self.config["d_model"]))
        shared = self.before[next(k for k in self.before if k.endswith("shared.weight"))]
        tokenizer = AutoTokenizer.from_pretrained(self.out)
        ids = []
        for row in initial:
            matches = (shared == row).all(dim=1).nonzero().flatten().tolist()
            self.assertNotEmpty(matches)
            ids.append(matches[0])
        self.assertLen(set(ids), PROMPT_LENGTH)
        for i in ids:
            self.assertNotIn(i, tokenizer.all_special_ids)
            self.assertFalse(tokenizer.convert_ids_to_tokens(i).startswith("<extra_id_"))
        saved = load_file(self.out / "adapter_model.safetensors")
        self.assertEqual(list(saved), ["prompt_embeddings"])
        self.assertFalse(torch.equal(saved["prompt_embeddings"], initial))

    def test_adapter_folder(self):
        config = read_json(self.out / "adapter_config.json")
        self.assertEqual(config["peft_type"], "PROMPT_TUNING")
        self.assertEqual(config["num_virtual_tokens"], PROMPT_LENGTH)
        self.assertEqual(config["num_transformer_submodules"], 1)  # encoder prompt only
        self.assertEqual(config["base_model_name_or_path"], str(base_checkpoint().resolve()))
        self.assertFalse((self.out / "model.safetensors").exists())

    def test_reloaded_adapter_scores_as_in_its_run(self):
        rank = read_json(self.eval_runs["rank"] / "all_results.json")
        self.assertEqual(rank["parameter_efficient"], "adapter:prompt_tuning")
        self.assertAlmostEqual(rank["eval_loss"], self.results["eval_loss"], places=5)
        self.assertEqual(rank["eval_accuracy"], self.results["eval_accuracy"])
        self.assertEqual(rank["trainable_parameters"], 0)  # evaluation only: loaded frozen

    def test_adapter_folder_continues_training(self):
        out, results, built = run("prompt-continued", "--do_train", "--eval_strategy", "no", "--max_steps", "2",
                                  "--learning_rate", "0.3", model=self.out)  # fmt: skip
        self.assertEqual(results["parameter_efficient"], "adapter:prompt_tuning")
        self.assertEqual(results["trainable_parameters"], PROMPT_LENGTH * self.config["d_model"])
        start = load_file(self.out / "adapter_model.safetensors")["prompt_embeddings"]
        _, before = built[0]
        self.assertTrue(torch.equal(before[next(k for k in before if k.startswith("prompt_encoder."))], start))
        self.assertFalse(torch.equal(load_file(out / "adapter_model.safetensors")["prompt_embeddings"], start))

    def test_generate_and_rank_see_the_same_prompt(self):
        """Generate mode's eval loss comes from peft's forward, rank mode's from encoder_states: equal."""
        generate = read_json(self.eval_runs["generate"] / "all_results.json")
        rank = read_json(self.eval_runs["rank"] / "all_results.json")
        self.assertAlmostEqual(generate["eval_loss"], rank["eval_loss"], places=5)

    def test_generated_text_is_greedy_decoding_after_the_prompt(self):
        """Each generate-mode prediction, decoded here by hand: the saved prompt vectors, then the input's token
        embeddings, into the plain base model (mask extended by ones), greedy step by step."""
        lines = (self.eval_runs["generate"] / "predictions" / "glue_sst2_validation.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        self.assertLen(rows, 32)
        model = T5ForConditionalGeneration.from_pretrained(base_checkpoint()).eval()
        tokenizer = AutoTokenizer.from_pretrained(self.out)
        prompt = load_file(self.out / "adapter_model.safetensors")["prompt_embeddings"][None]
        compared = 0
        for row in rows:
            ids = tokenizer(row["input"], return_tensors="pt").input_ids
            embeds = torch.cat((prompt, model.get_input_embeddings()(ids)), dim=1)
            mask = torch.ones(embeds.shape[:2], dtype=torch.long)
            decoded, margin = [model.config.decoder_start_token_id], float("inf")
            with torch.no_grad():
                encoded = model.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
                for _ in range(json.loads((self.out / "all_results.json").read_text())["generation_max_length"] - 1):
                    logits = model(encoder_outputs=(encoded,), attention_mask=mask,
                                   decoder_input_ids=torch.tensor([decoded])).logits[0, -1]  # fmt: skip
                    top = torch.topk(logits, 2)
                    margin = min(margin, (top.values[0] - top.values[1]).item())
                    decoded.append(int(top.indices[0]))
                    if decoded[-1] == tokenizer.eos_token_id:
                        break
            if margin > 1e-4:  # a near tie may decode either way under batching
                compared += 1
                self.assertEqual(tokenizer.decode(decoded, skip_special_tokens=True), row["prediction"], row["input"])
        self.assertGreater(compared, len(rows) // 2)

    def test_resume_loads_the_prompt_from_the_checkpoint(self):
        """A resume at the last step trains nothing and saves the checkpoint's prompt (loaded by the Trainer into the
        adapter built at start-up), not the fresh initialisation."""
        resumed = module_tmp() / "prompt-resumed"
        shutil.copytree(self.out / "checkpoint-5", resumed / "checkpoint-5")
        fine_tune_t5.main([*COMMON, "--model_name_or_path", str(base_checkpoint()), "--do_train", "--eval_strategy",
                           "no", "--max_steps", "5", "--prompt_tuning_length", str(PROMPT_LENGTH),
                           "--resume_from_checkpoint", "latest", "--output_dir", str(resumed)])  # fmt: skip
        saved = load_file(resumed / "adapter_model.safetensors")["prompt_embeddings"]
        self.assertTrue(torch.equal(saved, load_file(self.out / "adapter_model.safetensors")["prompt_embeddings"]))


class LoraTest(absltest.TestCase):
    """--lora_r 4 on q and v, checkpoints every 3 steps, merged at the end; then resumed from checkpoint-3."""

    ARGS = ("--do_train", "--do_eval", "--eval_strategy", "no", "--max_steps", "6", "--save_steps", "3",
            "--lora_r", str(LORA_R), "--lora_dropout", "0", "--merge_lora")  # fmt: skip

    @classmethod
    def setUpClass(cls):
        cls.config = read_json(base_checkpoint() / "config.json")
        cls.out, cls.results, _ = run("lora", *cls.ARGS)

    def adapted_matrices(self) -> int:
        return 2 * self.config["num_layers"] + 4 * self.config["num_decoder_layers"]  # q, v; decoder: self + cross

    def test_trainable_count(self):
        inner = self.config["num_heads"] * self.config["d_kv"]
        expected = self.adapted_matrices() * LORA_R * (self.config["d_model"] + inner)
        self.assertEqual(self.results["parameter_efficient"], "lora")
        self.assertEqual(self.results["trainable_parameters"], expected)

    def test_adapter_saved(self):
        config = read_json(self.out / "adapter_config.json")
        self.assertEqual((config["peft_type"], config["r"], config["lora_alpha"]), ("LORA", LORA_R, 2 * LORA_R))
        self.assertCountEqual(config["target_modules"], ["q", "v"])
        weights = load_file(self.out / "adapter_model.safetensors")
        self.assertLen(weights, 2 * self.adapted_matrices())
        for name, tensor in weights.items():
            self.assertRegex(name, r"\.(q|v)\.lora_[AB]\.weight$")
            self.assertIn(LORA_R, tensor.shape)
        self.assertFalse((self.out / "model.safetensors").exists())
        self.assertTrue((self.out / "checkpoint-3" / "adapter_model.safetensors").is_file())

    def test_merged_model_is_base_plus_the_low_rank_update(self):
        base = load_file(base_checkpoint() / "model.safetensors")
        merged = T5ForConditionalGeneration.from_pretrained(self.out / "merged").state_dict()
        adapter = load_file(self.out / "adapter_model.safetensors")
        scale = 2 * LORA_R / LORA_R  # lora_alpha / r
        updated = 0
        for name, tensor in base.items():
            stem = name[: -len(".weight")]
            a = adapter.get(f"base_model.model.{stem}.lora_A.weight")
            if a is None:
                self.assertTrue(torch.equal(merged[name], tensor), name)
                continue
            b = adapter[f"base_model.model.{stem}.lora_B.weight"]
            torch.testing.assert_close(merged[name], tensor + scale * b @ a, rtol=0, atol=1e-6)
            updated += 1
        self.assertEqual(updated, self.adapted_matrices())

    def test_merged_model_gives_the_adapter_models_outputs(self):
        tokenizer = AutoTokenizer.from_pretrained(self.out / "merged")
        inputs = dev_inputs(tokenizer)
        labels = tokenizer(["positive"] * inputs["input_ids"].shape[0], return_tensors="pt").input_ids
        merged = T5ForConditionalGeneration.from_pretrained(self.out / "merged").eval()
        adapted = PeftModel.from_pretrained(T5ForConditionalGeneration.from_pretrained(base_checkpoint()), self.out)
        plain = T5ForConditionalGeneration.from_pretrained(base_checkpoint()).eval()
        with torch.no_grad():
            logits = [m.eval()(**inputs, labels=labels).logits for m in (merged, adapted, plain)]
        torch.testing.assert_close(logits[0], logits[1], rtol=0, atol=1e-5)
        self.assertGreater((logits[1] - logits[2]).abs().max().item(), 1e-4)  # the adapter does something

    def test_resume_from_a_lora_checkpoint(self):
        resumed = module_tmp() / "lora-resumed"
        shutil.copytree(self.out / "checkpoint-3", resumed / "checkpoint-3")
        fine_tune_t5.main([*COMMON, "--model_name_or_path", str(base_checkpoint()), *self.ARGS,
                           "--resume_from_checkpoint", "latest", "--output_dir", str(resumed)])  # fmt: skip
        state = read_json(resumed / "trainer_state.json")
        self.assertEqual(state["global_step"], 6)
        original = load_file(self.out / "adapter_model.safetensors")
        again = load_file(resumed / "adapter_model.safetensors")
        self.assertCountEqual(original, again)
        for name in original:
            torch.testing.assert_close(again[name], original[name], rtol=1e-4, atol=1e-6)
        self.assertTrue((resumed / "merged" / "model.safetensors").is_file())

    def test_adapter_folder_refuses_a_second_method(self):
        with self.assertRaisesRegex(UsageError, "LORA adapter folder"):
            fine_tune_t5.main([*COMMON, "--model_name_or_path", str(self.out), "--do_train", "--lora_r", "2",
                               "--output_dir", str(module_tmp() / "unused")])  # fmt: skip


class UsageErrorTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("lora_and_prompt", ["--lora_r", "4", "--prompt_tuning_length", "5"], "cannot be combined"),
        ("freeze_and_lora", ["--freeze", "encoder", "--lora_r", "4"], "cannot be combined"),
        ("merge_without_lora", ["--merge_lora"], "--merge_lora needs LoRA"),
        ("unknown_part", ["--freeze", "encoder,attention"], "unknown part.*attention"),
        ("nothing_left", ["--freeze", "encoder", "decoder", "embeddings"], "nothing to train"),
        ("alpha_without_r", ["--lora_alpha", "8"], "--lora_alpha needs --lora_r"),
        ("zero_prompt", ["--prompt_tuning_length", "0"], "must be >= 1"),
        ("bad_device", ["--device_map", "everywhere"], "--device_map 'everywhere'"),
    )
    def test_flag_errors(self, args, message):
        with self.assertRaisesRegex(UsageError, message):
            fine_tune_t5.main([*COMMON, "--model_name_or_path", "unused", "--do_train", *args,
                               "--output_dir", self.create_tempdir().full_path])  # fmt: skip

    @parameterized.named_parameters(
        ("lora", ["--lora_r", "4"], "pass --model_name_or_path"),
        ("device_map", ["--device_map", "auto"], "needs --model_name_or_path"),
    )
    def test_from_scratch_errors(self, args, message):
        with self.assertRaisesRegex(UsageError, message):
            fine_tune_t5.main([*COMMON, "--model_config", "tiny", "--vocab_size", "300", "--do_train", *args,
                               "--output_dir", self.create_tempdir().full_path])  # fmt: skip

    def test_unknown_lora_target_names_the_linear_layers(self):
        with self.assertRaisesRegex(UsageError, r"--lora_target_modules query.*linear layers of this model: .*wi_0"):
            run("bad-target", "--do_train", "--lora_r", "4", "--lora_target_modules", "query")


if __name__ == "__main__":
    absltest.main()
