#!/usr/bin/env python3
"""Generates the corpus of malformed jobs: tests/fixtures/bad_jobs/<case>.json (plus any
prompts file a case needs) and cases.json mapping each case to a fragment its one-line error
must contain. Each breaks exactly one rule of docs/job.md."""
import copy
import json
import os
import shutil

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "bad_jobs")

GOOD = {"model": "../models/gpt2-tiny",
        "prompts": [{"clean": [5, 17, 3, 9, 60], "corrupt": [5, 17, 8, 9, 60], "answer": 9, "wrong": 12},
                    {"clean": [7, 1, 22, 9, 60], "corrupt": [7, 1, 50, 9, 60], "answer": 22, "wrong": 50}],
        "nodes": ["resid_pre", "z"], "output": "bad.h5"}


def variant(**changes):
    job = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is None:
            job.pop(key, None)
        else:
            job[key] = value
    return job


def prompts_with(index, **changes):
    prompts = copy.deepcopy(GOOD["prompts"])
    for key, value in changes.items():
        if value is None:
            prompts[index].pop(key, None)
        else:
            prompts[index][key] = value
    return prompts


IOI = "../../../models/ioi-small"
IOI_PROMPT = {"clean_text": "when Mary and John went to the store , John gave a drink to",
              "corrupt_text": "when Mary and John went to the store , Mary gave a drink to",
              "answer_text": "Mary", "wrong_text": "John"}

CLEAN_ONLY = [{"clean": [5, 17, 3, 9, 60], "answer": 9, "wrong": 12}, {"clean": [7, 1, 22, 9], "answer": 22, "wrong": 50}]

CASES = [
    ("syntax_error", '{"model": "../models/gpt2-tiny", "prompts": [', "syntax_error.json:1:45: JSON syntax error"),
    ("not_an_object", "[1, 2, 3]", "must be a JSON object"),
    ("unknown_key", variant(nodse=["z"]), 'unknown key "nodse"'),
    ("missing_model", variant(model=None), 'missing key "model"'),
    ("model_folder_missing", variant(model="../models/no-such-model"), 'model_folder_missing.json: "model": '),
    ("model_not_string", variant(model=3), '"model" must be a string'),
    ("no_prompts", variant(prompts=None), 'exactly one of "prompts"'),
    ("prompts_and_file", variant(prompts_file="p.jsonl"), 'exactly one of "prompts"'),
    ("prompts_file_missing", variant(prompts=None, prompts_file="missing.jsonl"), "cannot open"),
    ("prompts_file_bad_line", variant(prompts=None, prompts_file="bad_line.jsonl"), "bad_line.jsonl:2: not a JSON object"),
    ("empty_prompts", variant(prompts=[]), "no prompts"),
    ("prompt_unknown_key", variant(prompts=prompts_with(1, anwser=3)), 'unknown key "anwser"'),
    ("prompt_missing_clean", variant(prompts=prompts_with(0, clean=None)), 'missing key "clean"'),
    ("token_out_of_range", variant(prompts=prompts_with(1, clean=[7, 1, 64, 9, 60])), "prompts[1].clean[2] is 64, outside the vocabulary"),
    ("negative_token", variant(prompts=prompts_with(0, corrupt=[5, -1, 8, 9, 60])), "corrupt[1] must be a non-negative integer"),
    ("token_not_integer", variant(prompts=prompts_with(0, clean=[5, 1.5, 8, 9, 60])), "clean[1] must be a non-negative integer"),
    ("answer_out_of_range", variant(prompts=prompts_with(0, answer=99)), "answer/wrong token outside the vocabulary"),
    ("prompt_too_long", variant(prompts=prompts_with(0, clean=[1] * 33, corrupt=[2] * 33)), "more than the model's context of 32"),
    ("length_mismatch", variant(prompts=prompts_with(1, corrupt=[7, 1, 50, 9])), '"corrupt" has 4 tokens but "clean" has 5'),
    ("missing_corrupt", variant(prompts=prompts_with(1, corrupt=None)), 'prompts[1]: missing "corrupt"'),
    ("missing_answer", variant(prompts=prompts_with(0, answer=None)), 'missing "answer" (needed by metric logit_diff)'),
    ("missing_wrong", variant(prompts=prompts_with(1, wrong=None)), 'missing "wrong"'),
    ("unknown_site", variant(nodes=["mlp"]), "nodes[0] is not a site"),
    ("duplicate_site", variant(nodes=["z", "z"]), 'site "z" is listed twice'),
    ("empty_nodes", variant(nodes=[]), '"nodes" must be a non-empty array'),
    ("unknown_metric", variant(metric="accuracy"), 'metric "accuracy" is not known'),
    ("unknown_metric_in_list", variant(metric=["kl", "acc"]), 'metric "acc" is not known'),
    ("metric_listed_twice", variant(metric=["kl", "prob", "kl"]), 'metric "kl" is listed twice'),
    ("metric_empty_list", variant(metric=[]), '"metric" must be a metric name or a non-empty list'),
    ("metric_not_string", variant(metric=3), '"metric" must be a metric name or a non-empty list'),
    ("missing_wrong_second_metric", variant(metric=["prob", "logit_diff"], prompts=prompts_with(1, wrong=None)),
     'prompts[1]: missing "wrong" (needed by metric logit_diff)'),
    ("unknown_direction", variant(direction="sideways"), 'direction "sideways" is not known'),
    ("unknown_corruption", variant(corruption="shuffle"), 'corruption "shuffle" is not known'),
    ("corruption_bad_object", variant(corruption={"gaussian": {}, "zero": {}}), "an object with one key"),
    ("gaussian_no_positions", variant(prompts=CLEAN_ONLY, corruption={"gaussian": {"scale": 3}}), "prompts[0]: no positions to noise"),
    ("gaussian_unknown_key", variant(prompts=CLEAN_ONLY, corruption={"gaussian": {"positions": [1], "sigma": 2}}), 'unknown key "sigma"'),
    ("gaussian_position_past_end", variant(prompts=CLEAN_ONLY, corruption={"gaussian": {"positions": [4]}}), "noise position 4 is past its end"),
    ("gaussian_bad_scale", variant(prompts=CLEAN_ONLY, corruption={"gaussian": {"positions": [1], "scale": -1}}), '"scale" must be positive'),
    ("corrupt_with_zero", variant(corruption="zero"), '"corrupt" is not used by zero corruption'),
    ("denoise_with_mean", variant(prompts=[{"clean": [5, 17, 3], "answer": 9, "wrong": 2}] * 2, corruption="mean", direction="denoise"), 'direction must be "noise"'),
    ("mean_unequal_lengths", variant(prompts=CLEAN_ONLY, corruption="mean"), "needs prompts of one length"),
    ("resample_one_prompt", variant(prompts=CLEAN_ONLY[:1], corruption="resample"), "at least two prompts"),
    ("positions_bad_word", variant(positions="some"), '"positions" must be "each", "all" or a list'),
    ("position_past_end", variant(positions=[0, 50]), "position 50 is past the end of every prompt"),
    ("position_repeated", variant(positions=[1, 1]), "position 1 is listed twice"),
    ("window_zero", variant(window=0), '"window" must be an integer from 1 to 1048576'),
    ("window_wraps", variant(window=4294967296), '"window" must be an integer from 1 to 1048576'),
    ("window_int_min", variant(window=2147483648), '"window" must be an integer from 1 to 1048576'),
    ("answer_wraps", variant(prompts=prompts_with(0, answer=4294967296)), '"answer" must be an integer from 0 to'),
    ("samples_huge", variant(prompts=CLEAN_ONLY, corruption={"gaussian": {"positions": [1], "samples": 1e20}}),
     '"samples" must be an integer from 1 to 10000'),
    ("seed_negative", variant(prompts=CLEAN_ONLY, corruption={"resample": {"seed": -1}}), '"seed" must be an integer from 0'),
    ("duplicate_key", '{"model": "../models/gpt2-tiny", "nodes": ["z"], "nodes": ["resid_pre"], "prompts": []}',
     'duplicate key "nodes"'),
    ("prompts_file_not_regular", variant(prompts=None, prompts_file="/dev/zero"), "/dev/zero: not a regular file"),
    ("window_too_big", variant(window=3), "window 3 is larger than the model's 2 layers"),
    ("window_not_integer", variant(window=1.5), '"window" must be an integer'),
    ("unknown_estimate", variant(estimates=["atp2"]), 'estimates: "atp2" is not known'),
    ("exact_not_bool", variant(exact="yes"), '"exact" must be true or false'),
    ("nothing_to_compute", variant(exact=False), "nothing to compute"),
    # text prompts
    ("prompts_file_duplicate_key", variant(prompts=None, prompts_file="dup.jsonl"), 'dup.jsonl:1: duplicate key "clean"'),
    ("text_unknown_word", variant(model=IOI, prompts=[dict(IOI_PROMPT, clean_text="when Mary and Jon went to the store , Jon gave a drink to",
                                                           corrupt_text="when Mary and Jon went to the store , Mary gave a drink to")]),
     'models/ioi-small/tokenizer.json: "Jon" is not in the vocabulary'),
    ("text_without_tokenizer", variant(model="../models/llama-tiny", prompts=[{"clean_text": "a b", "corrupt_text": "a c", "answer": 9, "wrong": 12}]),
     "the prompts are text, which needs a tokenizer.json in the model folder"),
    ("text_and_ids", variant(model=IOI, prompts=[dict(IOI_PROMPT, clean=[0, 1])]), 'give "clean" or "clean_text", not both'),
    ("answer_text_two_words", variant(model=IOI, prompts=[dict(IOI_PROMPT, answer_text="Mary John")]),
     'prompts[0].answer_text: "Mary John" is 2 tokens (1 "Mary", 2 "John"); the metric reads one token'),
    ("answer_text_empty", variant(model=IOI, prompts=[dict(IOI_PROMPT, answer_text="")]), '"answer_text" must be a non-empty string'),
    ("text_length_mismatch", variant(model=IOI, prompts=[dict(IOI_PROMPT, corrupt_text="when Mary and John went")]),
     '"corrupt" is 6 tokens but "clean" is 15: they must align token for token'),
    ("text_no_tokens", variant(model=IOI, prompts=[dict(IOI_PROMPT, clean_text=" ", corrupt_text=" ")], add_bos=False),
     "prompts[0].clean_text: the text has no tokens"),
    ("add_bos_not_bool", variant(model=IOI, prompts=[IOI_PROMPT], add_bos="yes"), '"add_bos" must be true or false'),
    ("add_bos_without_bos", variant(prompts=[{"clean_text": "w1", "corrupt_text": "w3", "answer": 9, "wrong": 12}], add_bos=True),
     '"add_bos" is true but the model\'s tokenizer names no BOS token'),
    ("text_mean_lengths", variant(model=IOI, prompts=[{"clean_text": "when Mary and John", "answer_text": "Mary", "wrong_text": "John"},
                                                      {"clean_text": "when Mary", "answer_text": "Mary", "wrong_text": "John"}],
                                  corruption="mean"),
     "prompts[1] has 3 tokens but prompts[0] has 5; mean corruption needs prompts of one length"),
    # causal tracing (ROME): centred windows, severed paths, per-prompt subjects, the noise's std
    ("window_bad_align", variant(window={"size": 1, "align": "middle"}), '"align" must be "start" or "center"'),
    ("window_object_unknown_key", variant(window={"size": 1, "width": 2}), 'window: unknown key "width"'),
    ("window_object_no_size", variant(window={"align": "center"}), 'missing key "size"'),
    ("sever_unknown", variant(nodes=["resid_pre"], sever="mlp_out"), '"sever" must be "mlp" or "attn"'),
    ("sever_non_residual", variant(sever="mlp"), '"sever" restores residual-stream nodes only'),
    ("sever_with_estimates", variant(nodes=["resid_pre"], sever="attn", estimates=["atp"]), '"sever" has no gradient estimates'),
    ("gaussian_bad_std", variant(prompts=CLEAN_ONLY, corruption={"gaussian": {"positions": [1], "std": "subject"}}),
     '"std" must be "vocabulary", "subjects" or {"corpus": FILE}'),
    ("noise_positions_not_gaussian", variant(prompts=prompts_with(1, noise_positions=[1])),
     'prompts[1]: "noise_positions" is used by gaussian corruption only'),
    ("noise_positions_empty", variant(prompts=[dict(CLEAN_ONLY[0], noise_positions=[])], corruption={"gaussian": {}}),
     '"noise_positions" is empty'),
    ("noise_positions_past_end", variant(prompts=[CLEAN_ONLY[0], dict(CLEAN_ONLY[1], noise_positions=[0, 7])],
                                         corruption={"gaussian": {"positions": [1]}}), "gaussian noise position 7 is past its end"),
    ("noise_positions_missing", variant(prompts=[dict(CLEAN_ONLY[0], noise_positions=[1]), CLEAN_ONLY[1]], corruption={"gaussian": {}}),
     "prompts[1]: no positions to noise"),
    ("corpus_missing", variant(prompts=CLEAN_ONLY, corruption={"gaussian": {"positions": [1], "std": {"corpus": "no-such-corpus.txt"}}}),
     "no-such-corpus.txt"),
    ("corpus_token_out_of_range", variant(prompts=CLEAN_ONLY, corruption={"gaussian": {"positions": [1], "std": {"corpus": "corpus_big.txt"}}}),
     "corpus_big.txt:2: token 99 is outside the vocabulary"),
    ("corpus_text_without_tokenizer", variant(model="../models/llama-tiny", prompts=CLEAN_ONLY,
                                              corruption={"gaussian": {"positions": [1], "std": {"corpus": "corpus_text.txt"}}}),
     "corpus_text.txt:1: text needs the model folder's tokenizer.json"),
    ("corpus_one_token", variant(prompts=CLEAN_ONLY, corruption={"gaussian": {"positions": [1], "std": {"corpus": "corpus_one.txt"}}}),
     "the corpus holds 1 token; a standard deviation needs at least two"),
    ("corpus_bad_line", variant(prompts=CLEAN_ONLY, corruption={"gaussian": {"positions": [1], "std": {"corpus": "corpus_bad.txt"}}}),
     "corpus_bad.txt:1: not a JSON list of token ids"),
    # edges (docs/edges.md, "Job keys")
    ("edges_unknown_from_kind", variant(nodes=None, edges={"from": ["head", "neuron"]}),
     'edges.from: "neuron" is not an edge end of that side'),
    ("edges_unknown_to_kind", variant(nodes=None, edges={"to": ["z"]}), 'edges.to: "z" is not an edge end of that side'),
    ("edges_inverted_layers", variant(nodes=None, edges={"from_layers": [1, 0]}), "edges.from_layers [1, 0] is inverted"),
    ("edges_layers_not_pair", variant(nodes=None, edges={"to_layers": [1]}), "edges.to_layers must be [first, last]"),
    ("edges_unknown_key", variant(nodes=None, edges={"from": ["head"], "layers": [0, 1]}), 'edges: unknown key "layers"'),
    ("edges_not_all", variant(nodes=None, edges="every"), '"edges" must be "all" or an object'),
    ("edges_with_sever", variant(nodes=["resid_pre"], edges="all", sever="mlp"), '"sever" does not apply to edges'),
    ("edges_select_none", variant(nodes=None, edges={"from_layers": [5, 6], "from": ["head"]}), '"edges" selects no edge'),
    ("edges_node_estimate_without_nodes", variant(nodes=None, edges="all", estimates=["atp"]), 'node estimates (atp, atp_qk, atp_star) need "nodes"'),
    ("edges_estimate_without_edges", variant(estimates=["eap"]), 'edge estimates (eap, eap_ig, eap_ig_act) need "edges"'),
    ("edges_ig_steps_without_edges", variant(ig_steps=3), '"ig_steps" is for the edge estimates'),
    ("edges_ig_steps_zero", variant(nodes=None, edges="all", ig_steps=0), '"ig_steps" must be an integer from 1'),
    # circuits (docs/circuits.md, "Job key")
    ("circuits_not_object", variant(circuits="all"), '"circuits" must be an object'),
    ("circuits_set_two_kinds", variant(circuits={"sets": [{"name": "a", "edges": [], "nodes": ["embed"]}]}),
     'give exactly one of "edges", "nodes" and "rank"'),
    ("circuits_unknown_edge", variant(circuits={"sets": [{"name": "a", "edges": ["L0.H1->L5.H0.q"]}]}),
     '"L0.H1->L5.H0.q" is not an edge of the job\'s graph'),
    ("circuits_bad_rank", variant(circuits={"sets": [{"name": "a", "rank": "edges/atp", "k": [1]}]}),
     '"rank" "edges/atp" is not a ranking'),
    ("circuits_rank_not_computed", variant(circuits={"sets": [{"name": "a", "rank": "effects/atp", "k": [1]}]}),
     '"rank" "effects/atp": the job does not compute atp'),
    ("circuits_k_twice", variant(circuits={"sets": [{"name": "a", "rank": "random", "k": [2, 2]}]}), "k lists 2 twice"),
    ("circuits_pair_without_corrupt", variant(prompts=CLEAN_ONLY, corruption="zero",
                                              circuits={"sets": [{"name": "a", "edges": []}], "ablation": ["zero", "pair"]}),
     '"pair" ablation reads the corrupt prompts'),
    ("circuits_mean_lengths", variant(prompts=[GOOD["prompts"][0], {"clean": [7, 1, 22, 9], "corrupt": [7, 1, 50, 9], "answer": 2, "wrong": 3}],
                                      circuits={"sets": [{"name": "a", "edges": []}], "ablation": ["mean"]}),
     '"edges mean" ablation needs prompts of one length'),
    ("circuits_position_without_specific", variant(circuits={"sets": [{"name": "a", "edges": ["embed->L0.H1.q@2"]}]}),
     'names a position, which needs "positions": "specific"'),
    ("circuits_unknown_column", variant(circuits={"positions": "specific", "sets": [{"name": "a", "edges": ["embed->L0.H1.q@9"]}]}),
     '"@9" is not a position column of the job'),
    ("circuits_bad_ablation", variant(circuits={"sets": [{"name": "a", "edges": []}], "ablation": ["mean", "noise"]}),
     'an ablation is "pair", "mean", "resample", "zero"'),
]


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    with open(os.path.join(OUT, "p.jsonl"), "w") as f:
        f.write(json.dumps(GOOD["prompts"][0]) + "\n")
    with open(os.path.join(OUT, "dup.jsonl"), "w") as f:
        f.write('{"clean": [1, 2], "clean": [3, 4], "corrupt": [1, 3], "answer": 1, "wrong": 2}\n')
    with open(os.path.join(OUT, "bad_line.jsonl"), "w") as f:
        f.write(json.dumps(GOOD["prompts"][0]) + "\n{clean: [1, 2]}\n")
    for name, text in [("corpus_big.txt", "[3, 4]\n[5, 99]\n"), ("corpus_text.txt", "Paris\n"), ("corpus_one.txt", "\n[3]\n\n"),
                       ("corpus_bad.txt", "[3, 4\n")]:
        with open(os.path.join(OUT, name), "w") as f:
            f.write(text)
    expected = {}
    for name, job, fragment in CASES:
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            f.write(job if isinstance(job, str) else json.dumps(job, indent=1))
        expected[name] = fragment
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(f"{len(CASES)} malformed jobs in {OUT}")


if __name__ == "__main__":
    main()
