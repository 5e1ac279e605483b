"""The paper's experiments as one command each (`mad-train experiment NAME`): Tables 2, 3, 4 and Figures 3, 6.

budget.py   the compute budgets (configs/experiments/<budget>.yaml)
cells.py    a cell = one model x one seed, its config = a repository config + the budget's overlay
runner.py   train/resume/skip the cells with fit, record each (<out>/cells/<key>.json)
measure.py, latency.py   measurements beyond the test metrics
tables.py, plots.py      table.md and the figures
paper.py    the paper's published numbers
table2.py ... fig6.py    one module per experiment; registry.py maps the names to them

This file imports nothing: `mad-train` builds every command's parser at start, and the experiments
pull in training, plotting and scikit-learn, seconds that no other command should pay.
"""

TITLES: dict[str, str] = {
    "table2": "Table 2: image only vs signal only vs both (MAD variants)",
    "table3": "Table 3: model size, MAD_small vs MAD_base",
    "table4": "Table 4: MAD vs the baselines",
    "fig3": "Figure 3: the latent space before and after the flows",
    "fig6": "Figure 6: CE only vs SupCon then CE, at equal compute",
}
