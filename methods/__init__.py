"""The built-in methods, indexed without importing them (torch stays unloaded while listing).

Each row names a registered method: where its class lives (module in this package : class), the
hyper-parameter overrides that make it a variant (ablations are variants of one class, not copies),
its role in reports, and the class's version and paper (a test checks they match the class).
Roles: "method" (ranked), "label-free" (never reads labels: ranked among themselves, in their own
group), "reference" (floor / chance rows, not ranked), "upper-bound" (trained or
coded with clean labels, never ranked with the noisy-label methods).
"""

SCBCH_PAPER = "Peng et al., SCBCH, arXiv 2511.07780 (AAAI 2026)"
DCMH_PAPER = "Jiang & Li, DCMH, CVPR 2017"
RSHNL_PAPER = "Pu et al., RSHNL, AAAI 2025 (arXiv 2501.01699)"
NRCH_PAPER = "Wang et al., NRCH, ACM MM 2024 (doi 10.1145/3664647.3680564)"
NACD_PAPER = "Su et al., NACD, NeurIPS 2025 (OpenReview Bi1udlTjMb)"
UCCH_PAPER = "Hu et al., UCCH, IEEE TPAMI 2023 (doi 10.1109/TPAMI.2022.3177356)"
DJSRH_PAPER = "Su et al., DJSRH, ICCV 2019 (doi 10.1109/ICCV.2019.00312)"
DGCPN_PAPER = "Yu et al., DGCPN, AAAI 2021 (doi 10.1609/aaai.v35i5.16592)"
MGSH_PAPER = "Tan et al., MGSH, AAAI 2026 (doi 10.1609/aaai.v40i11.37894)"
RFCMH_PAPER = "Sun et al., RFCMH, ICML 2026 (PMLR 306)"
REFERENCE = "reference row (specs/baselines.md)"

BUILTIN_METHODS = (
    # name, target, version, paper, role, variant overrides, summary
    ("dcmh", "dcmh:DCMH", "4", DCMH_PAPER, "method", {}, "Deep Cross-Modal Hashing on features: noise-unaware supervised baseline"),
    ("floor-constant", "references:ConstantCodes", "1", REFERENCE, "reference", {}, "every item gets the same code: the collapsed-model floor"),
    ("random-codes", "references:RandomCodes", "1", REFERENCE, "reference", {}, "i.i.d. random +-1 codes: chance level"),
    ("label-oracle", "references:LabelOracle", "1", REFERENCE, "upper-bound", {}, "sign(Y_clean R): codes from clean labels, an upper reference"),
    ("scbch", "scbch:SCBCH", "1", SCBCH_PAPER, "method", {}, "CSCC sample reliability + bidirectional soft contrastive hashing"),
    ("scbch-no-cscc", "scbch:SCBCH", "1", SCBCH_PAPER, "method", {"use_cscc": False}, "SCBCH ablation: plain classification loss (w = 1)"),
    ("scbch-no-bsch", "scbch:SCBCH", "1", SCBCH_PAPER, "method", {"alpha": 0.0}, "SCBCH ablation: no contrastive term (alpha = 0)"),
    ("scbch-no-warmup", "scbch:SCBCH", "1", SCBCH_PAPER, "method", {"warmup_epochs": 0}, "SCBCH ablation: CSCC weighting from epoch 0"),
    ("scbch-hard-pairs", "scbch:SCBCH", "1", SCBCH_PAPER, "method", {"pair_similarity": "binary"}, "SCBCH ablation: binary label-sharing pairs instead of soft Jaccard"),
    ("scbch-one-way", "scbch:SCBCH", "1", SCBCH_PAPER, "method", {"bidirectional": False}, "SCBCH ablation: only the image-to-text mask"),
    ("scbch-clean", "scbch:SCBCH", "1", SCBCH_PAPER, "upper-bound", {}, "SCBCH trained on clean labels: an upper bound, never ranked"),
    ("rshnl", "rshnl:RSHNL", "1", RSHNL_PAPER, "method", {}, "robust self-paced hashing: q-robust contrastive + centre aggregation + NSH weights"),
    ("rshnl-hard", "rshnl:RSHNL", "1", RSHNL_PAPER, "method", {"self_paced": "hard"}, "RSHNL with the hard self-paced regulariser"),
    ("rshnl-temp", "rshnl:RSHNL", "1", RSHNL_PAPER, "method", {"aligned_target": 0.9}, "RSHNL variant (not the paper): logits / T, T from C so that an aligned sample reaches y^T p = 0.9"),
    ("nrch", "nrch:NRCH", "1", NRCH_PAPER, "method", {}, "robust contrastive hashing + dynamic noise separator (GMM)"),
    ("mgsh", "mgsh:MGSH", "1", MGSH_PAPER, "method", {}, "small-loss selection + meta-similarity sample weights; needs a clean meta set (+meta-N)"),
    ("rfcmh", "rfcmh:RFCMH", "1", RFCMH_PAPER, "method", {}, "fuzzy admissibility reliability weights + q-contrastive + NRCH LSE (multi-label adaptation)"),
    ("nacd", "nacd:NACD", "1", NACD_PAPER, "method", {}, "label-entry confidence from the model and its neighbours + class-aware robust contrastive hashing (redundant labels)"),
    ("ucch", "ucch:UCCH", "1", UCCH_PAPER, "label-free", {}, "label-free reference: contrastive hashing against binary memory keys + cross-modal ranking"),
    ("djsrh", "djsrh:DJSRH", "1", DJSRH_PAPER, "label-free", {}, "label-free reference: codes reconstruct a per-batch joint-semantics feature affinity"),
    ("dgcpn", "dgcpn:DGCPN", "1", DGCPN_PAPER, "label-free", {}, "label-free reference: codes reconstruct a graph-neighbour coherence target"),
)
