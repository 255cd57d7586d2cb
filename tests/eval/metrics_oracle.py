#!/usr/bin/env python3
"""Reference values for tsumugi's eval metrics, from the libraries llm-jp-eval uses.

Reads JSON from the file named by argv[1]:
  {"pairs": [[pred, gold], ...], "xy": [[[x...], [y...]], ...]}
and prints JSON:
  {"token_sort_ratio": [...], "bleu": [...], "pearson": [r...], "spearman": [rho...]}
token_sort_ratio: fuzzywuzzy.fuzz.token_sort_ratio (Debian python3-fuzzywuzzy, with
python3-levenshtein); bleu: sacrebleu BLEU(effective_order=True).sentence_score(pred, [gold]);
pearson / spearman: scipy.stats (python3-scipy).
"""
import json
import sys

missing = []
try:
    from fuzzywuzzy import fuzz, StringMatcher  # noqa: F401  (StringMatcher: python-Levenshtein is there)
except ImportError as e:
    missing.append(f"python3-fuzzywuzzy and python3-levenshtein (apt) [{e}]")
try:
    from scipy.stats import pearsonr, spearmanr
except ImportError as e:
    missing.append(f"python3-scipy (apt) [{e}]")
try:
    from sacrebleu.metrics import BLEU
except ImportError as e:
    missing.append(f"sacrebleu (pip, tests/requirements-torch.txt) [{e}]")
if missing:
    print("missing oracle packages: " + "; ".join(missing), file=sys.stderr)
    sys.exit(3)

with open(sys.argv[1], encoding="utf-8") as f:
    req = json.load(f)
bleu = BLEU(effective_order=True)
out = {
    "token_sort_ratio": [fuzz.token_sort_ratio(p, g) for p, g in req["pairs"]],
    "bleu": [bleu.sentence_score(p, [g]).score for p, g in req["pairs"]],
    "tokens_13a": [bleu._preprocess_segment(p) for p, _ in req["pairs"]],
}
out["pearson"] = [float(pearsonr(x, y)[0]) for x, y in req.get("xy", [])]
out["spearman"] = [float(spearmanr(x, y)[0]) for x, y in req.get("xy", [])]
print(json.dumps(out, ensure_ascii=False))
