"""Reference sets from benchmark datasets: `decon evals build` and `decon evals stats`."""
