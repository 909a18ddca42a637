"""The run engine and ``nnUNetv2_glrp reproduce``: the paper's tables on one's own data, with honest statistics.

One module per concept: :mod:`grid` (tables, runs, trainer names, seed result trees), :mod:`training`
(the shared ``Setting``; ``nnUNetv2_train`` per trainer/fold/seed, skipped when finished), :mod:`runner`
(train, predict, evaluate, record one run; the control row's folds; the loop), :mod:`engine` (checks, plan,
the grid, ``runs.csv``: what ``reproduce``, the demo and the few-label benchmark all call), :mod:`results`
(typed run records, the CSV), :mod:`statistics` (spread over draws, paired bootstrap, Wilcoxon), :mod:`cells`
(a table's numbers), :mod:`tables` (Markdown), :mod:`figures` (PNG), :mod:`estimate` (the printed plan),
:mod:`paper_values` (the paper's ACDC numbers), :mod:`api` (:func:`api.reproduce`). Method names come from
:mod:`nnunetv2_glrp.registry`.
"""
