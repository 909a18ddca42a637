"""``nnUNetv2_glrp reproduce``: the paper's tables on one's own data, with honest statistics.

One module per concept: :mod:`grid` (methods, tables, runs, budgets, seed result trees),
:mod:`training` (``nnUNetv2_train`` per trainer/fold/seed, skipped when finished), :mod:`runner`
(train, predict, evaluate, record one run; the loop), :mod:`results` (run records, the CSV),
:mod:`statistics` (spread over draws, paired bootstrap, Wilcoxon), :mod:`cells` (a table's
numbers), :mod:`tables` (Markdown), :mod:`figures` (PNG), :mod:`estimate` (the printed plan),
:mod:`paper_values` (the paper's ACDC numbers), :mod:`api` (:func:`api.reproduce`).
"""
