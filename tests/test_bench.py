"""The attention, collator, preprocessing, pre-training throughput and quality benchmarks run end to end in their quick
modes (so they cannot silently rot)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from unittest import mock

from absl.testing import absltest

from bench import attention as attention_bench
from bench import collator as collator_bench
from bench import gpu_checks, input_dependence, pretrain_quality, pretraining_payoff, profile_step, run_all
from bench import preprocessing as preprocessing_bench
from bench import pretrain_throughput as pretrain_bench
from tests.helpers import REPO, run_script_here


class QuickBenchmarksTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = Path(tempfile.mkdtemp(prefix="test_bench_"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def test_collator_quick(self):
        output = self.tmp / "collator.md"
        summary = collator_bench.main(["--quick", "--output", str(output)])
        self.assertEqual(sorted(summary["results"]), [2, 8])
        for result in summary["results"].values():
            self.assertGreater(result["ours"]["examples_per_s"], 0)
            self.assertGreater(result["ratio"], 0)
        text = output.read_text()
        self.assertIn("| 8 |", text)
        self.assertIn("Machine:", text)
        pmi = summary["pmi"]  # real tokens and a PMI vocabulary from the corpus: n-grams are found and masked
        self.assertGreater(pmi["vocabulary_ngrams"], 0)
        self.assertGreater(pmi["ngram_spans_per_example"], 0)
        self.assertGreater(pmi["ratio"], 0)
        self.assertIn("| pmi |", text)

    def test_attention_quick(self):
        output = self.tmp / "attention.md"
        summary = attention_bench.main(["--quick", "--output", str(output)])
        self.assertEqual([row["shape"] for row in summary["rows"]], [shape[0] for shape in attention_bench.SHAPES])
        for row in summary["rows"]:
            self.assertGreater(row["ratio"], 0)
            self.assertLess(row["blocked_error"], 2e-2)  # bf16 inputs: their own rounding, 2^-8; fp32: ~1e-6
        self.assertEqual(len(summary["sweep"]), 3)
        self.assertIn("blocked / sdpa", output.read_text())

    def test_preprocessing_quick(self):
        output = self.tmp / "preprocessing.md"
        summary = preprocessing_bench.main(["--quick", "--output", str(output), "--work_dir", str(self.tmp / "w")])
        (run,) = summary["runs"]
        self.assertEqual(run["num_proc"], 1)
        self.assertGreater(run["corpus_tokens"], 0)
        self.assertEqual(
            run["blocks"] * preprocessing_bench.RAW_LENGTH + run["corpus_tokens_dropped_by_packing"],
            run["corpus_tokens"],
        )
        self.assertGreater(run["peak_tree_anon"], 0)
        self.assertGreaterEqual(run["peak_tree_rss"], run["peak_tree_anon"])
        self.assertGreaterEqual(run["peak_tree_rss"], run["baseline_rss"])  # the polled peak includes the live worker
        self.assertIn("| 0.05 MB | 1 |", output.read_text())

    def test_pretrain_throughput_quick_rounds(self):
        """run_all's quick flags with 2 rounds: ours and plain alternate, their rows pool both rounds' steps."""
        (quick,) = [bench.quick_args for bench in run_all.BENCHMARKS if bench.name == "pretrain_throughput"]
        quick = list(quick)
        quick[quick.index("--work_dir") + 1] = str(self.tmp / "w")
        output = self.tmp / "pretrain.md"
        order = []

        def logged(name, function):
            return lambda *a, **k: (order.append(name), function(*a, **k))[1]

        with (
            mock.patch.object(pretrain_bench, "run_ours", logged("ours", pretrain_bench.run_ours)),
            mock.patch.object(pretrain_bench, "run_plain", logged("plain", pretrain_bench.run_plain)),
        ):
            summary = pretrain_bench.main([*quick, "--rounds", "2", "--output", str(output)])
        self.assertEqual(order, ["ours", "plain", "plain", "ours"])  # round 2 swaps which goes first
        ours, plain = summary["runs"][:2]
        self.assertEqual((ours["rounds"], plain["rounds"]), (2, 2))
        self.assertEqual(len(summary["round_ratios"]), 2)
        self.assertTrue(all(ratio > 0 for ratio in summary["round_ratios"]), summary["round_ratios"])
        self.assertBetween(len(ours["step_seconds"]), 2, 4)  # 2 timed steps per round; a contended round keeps fewer
        self.assertEqual(ours["timed_steps"], len(ours["step_seconds"]))
        self.assertAlmostEqual(summary["ratio_ours_vs_plain"], plain["seconds_per_step"] / ours["seconds_per_step"])
        text = output.read_text()
        self.assertIn("Over 2 rounds", text)
        self.assertIn(", ".join(f"{r:.2f}x" for r in summary["round_ratios"]), text)

    def test_pretrain_quality_quick(self):
        """run_all's quick flags: both sides' held-out loss curves on the same eval points, the ratio line."""
        (quick,) = [bench.quick_args for bench in run_all.BENCHMARKS if bench.name == "pretrain_quality"]
        quick = list(quick)
        quick[quick.index("--work_dir") + 1] = str(self.tmp / "w")
        output = self.tmp / "quality.md"
        summary = pretrain_quality.main([*quick, "--output", str(output)])
        steps = list(range(0, pretrain_quality.QUICK["plain_steps"] + 1, pretrain_quality.QUICK["eval_every"]))
        for side in ("ours_run", "plain_run"):
            curve = summary[side]["curve"]
            self.assertEqual([point["step"] for point in curve], steps)
            seconds = [point["seconds"] for point in curve]
            self.assertEqual(seconds[0], 0.0)
            self.assertEqual(seconds, sorted(seconds))
            self.assertLessEqual(seconds[-1], summary[side]["train_seconds"])  # the evaluations are not counted
        self.assertEqual(summary["target_loss"], summary["plain_run"]["curve"][-1]["loss"])
        if summary["ours"] and summary["ours"]["seconds"] > 0:
            self.assertAlmostEqual(summary["ratio"], summary["plain"]["seconds"] / summary["ours"]["seconds"])
        text = output.read_text()
        ratio_line = f"- **time ratio plain / ours to plain's final held-out loss {summary['target_loss']:.3f}: "
        self.assertIn(ratio_line, text)
        self.assertIn("| step | ours train s | ours loss | plain train s | plain loss |", text)
        for side in ("ours_run", "plain_run"):
            for point in summary[side]["curve"]:
                self.assertIn(f"{point['loss']:.3f}", text)
        self.assertIn("Machine:", text)

    def test_profile_step_quick(self):
        result = profile_step.main(["--model_config", "tiny", "--batch_size", "4", "--input_length", "32",
                                    "--target_length", "8", "--vocab_size", "500", "--warmup", "1", "--steps", "1",
                                    "--bf16", "off"])  # fmt: skip
        self.assertEqual((result["precision"], result["parameters"] > 0), ("fp32", True))
        self.assertGreater(result["step_seconds"], 0)
        self.assertAlmostEqual(sum(result["categories"].values()), result["profiled_seconds"], places=6)
        self.assertGreater(result["categories"]["matmul"], 0)  # the linear layers were found and counted
        self.assertEqual(profile_step.category("nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT"), "matmul")
        self.assertEqual(profile_step.category("fmha_cutlassB_bf16_aligned_64x64_k64_sm80"), "attention")
        self.assertEqual(profile_step.category("void at::native::vectorized_elementwise_kernel<4>"), "other")

    def test_gpu_checks_smoke(self):
        """The GPU script's checks on CPU: the flex kernel's forward, the model and reload checks on the CPU default
        path; a check that fails stops it before any speed is measured."""
        output = self.tmp / "gpu_checks.md"
        self.assertEqual(gpu_checks.main(["--smoke", "--no_speed", "--output", str(output)]), 0)
        text = output.read_text()
        self.assertEqual(text.count("| True |"), 6, text)  # 3 kernels, loss, gradients, reload
        with mock.patch.object(gpu_checks, "passes", return_value=False):
            self.assertEqual(gpu_checks.main(["--smoke", "--no_speed", "--output", str(output)]), 1)
        self.assertIn("no speed is reported", output.read_text())

    def test_input_dependence(self):
        """0 for a model whose decoder cannot see the encoder (cross-attention outputs zeroed), above 0 otherwise; the
        command prints a row per model, random_init: controls included, and refuses a file with too few documents and a
        tokenizer without sentinels."""
        import random

        import torch
        from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

        words = [f"w{i}" for i in range(40)]
        rng = random.Random(0)
        text = self.tmp / "docs.txt"
        text.write_text("\n".join([" ".join(rng.choices(words, k=30)) for _ in range(20)] + ["too short"]) + "\n")
        config = T5Config(vocab_size=384, d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=1,
                          decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)  # fmt: skip
        torch.manual_seed(0)
        model = T5ForConditionalGeneration(config)
        seeing, blind = self.tmp / "seeing", self.tmp / "blind"
        for folder in (seeing, blind):
            model.save_pretrained(folder)
            ByT5Tokenizer().save_pretrained(folder)
            with torch.no_grad():
                for layer in model.decoder.block:
                    layer.layer[1].EncDecAttention.o.weight.zero_()
        documents, short = input_dependence.read_documents(text, 16, seed=0)
        self.assertEqual((len(documents), short), (16, 1))
        self.assertEqual(input_dependence.input_dependence(str(blind), documents), 0.0)
        self.assertGreater(input_dependence.input_dependence(str(seeing), documents), 1e-3)
        code, out = run_script_here(input_dependence.main, [str(blind), f"random_init:{seeing}", "--text_file",
                                                            str(text), "--pairs", "8"])  # fmt: skip
        self.assertEqual(code, 0, out)
        self.assertRegex(out, rf"\| {blind} \| - \| 0.000 \|")
        self.assertRegex(out, r"\| random_init:\S+ \| 0 \| 0\.\d{3} \|")
        with self.assertRaisesRegex(SystemExit, "need 40"):
            input_dependence.main([str(blind), "--text_file", str(text), "--pairs", "20"])
        no_sentinels = self.tmp / "no_sentinels"
        model.save_pretrained(no_sentinels)
        ByT5Tokenizer(extra_ids=0).save_pretrained(no_sentinels)
        with self.assertRaisesRegex(SystemExit, "has no <extra_id_0>"):
            input_dependence.input_dependence(str(no_sentinels), documents)

    def test_task_text_for_in_domain_pre_training(self):
        path = pretraining_payoff.write_task_text(self.tmp / "text" / "tasks.txt")
        lines = path.read_text(encoding="utf-8").split("\n")
        self.assertEqual(lines[-1], "")  # newline-terminated
        lines = lines[:-1]
        # One line per training example: the official train split sizes of SST-2, CoLA, RTE (GLUE) and CB (SuperGLUE).
        self.assertLen(lines, 67_349 + 8_551 + 2_490 + 250)
        self.assertEqual(lines[0], "hide new secretions from the parental units")  # SST-2's first row, no label
        rte = "No Weapons of Mass Destruction Found in Iraq Yet. Weapons of Mass Destruction Found in Iraq."
        self.assertIn(rte, lines)  # both sentences of RTE's first pair
        self.assertFalse([line for line in lines if not line.strip() or "\t" in line])

    def test_payoff_recipe_commands(self):
        """The stages' commands (the stages themselves take hours: README "Does pre-training help?")."""

        def commands(*argv: str) -> list[list[str]]:
            calls = []

            def fake_run(command, log):
                calls.append(command)
                if "finetune_suite.py" in command:
                    suite_dir = Path(command[command.index("--suite_dir") + 1])
                    suite_dir.mkdir(parents=True, exist_ok=True)
                    (suite_dir / "suite_results.md").write_text("table")
                return 1.0

            work = self.tmp / "payoff" / "-".join(argv)
            with mock.patch.object(pretraining_payoff, "run", fake_run):
                pretraining_payoff.main(["--work_dir", str(work), "--stages", "pretrain", "suite", *argv])
            return calls

        build, pretrain, suite = commands()  # the default: PMI masking, CoLA with a budget of its own
        self.assertEqual(build[1:4], ["-m", "t5kit.pmi", "build"])
        vocabulary = build[build.index("--output") + 1]
        self.assertEqual(pretrain[pretrain.index("--objective") :][:4], ["--objective", "pmi", "--pmi_vocabulary",
                                                                         vocabulary])  # fmt: skip
        self.assertEqual(pretrain[pretrain.index("--max_steps") + 1], "1150")
        self.assertIn("--task_set=glue/cola:max_steps=1000", suite)
        pretrain, suite = commands("--objective", "span_corruption", "--pretrain_steps", "1000", "--task_set")
        self.assertEqual(pretrain[pretrain.index("--objective") + 1 :][:3], ["span_corruption", "--max_steps", "1000"])
        self.assertFalse([arg for arg in suite if arg.startswith("--task_set")])

    def test_compile_choices_pick_the_grid(self):
        grid = pretrain_bench.grid_rest
        self.assertEqual(grid(["fp32", "bf16"], "bf16", "on"), [("fp32", False), ("fp32", True), ("bf16", True)])
        self.assertEqual(grid(["fp32", "bf16"], "bf16", "default"), [("fp32", False), ("bf16", True)])
        self.assertEqual(grid(["fp32", "bf16"], "bf16", "off"), [("fp32", False)])
        self.assertEqual(grid(["fp32"], "fp32", "default"), [("fp32", True)])

    def test_run_all_lists_both(self):
        names = [bench.name for bench in run_all.BENCHMARKS]
        self.assertIn("preprocessing", names)
        self.assertIn("attention", names)
        self.assertIn("collator", names)
        for name in names:
            self.assertTrue((REPO / "bench" / f"{name}.py").is_file(), name)
        self.assertEqual(run_all.headlines("x\n- **a** b\n- c\n- d **e**\n\nMachine:\n\n- **cpu**: x"), ["a b", "d e"])


if __name__ == "__main__":
    absltest.main()
