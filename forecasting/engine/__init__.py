"""The forecasting engine: series, the TFT, training, backtests, the simulator and the probability maths.

Django-free: nothing here imports Django, settings or the apps, so it runs in any process (a
notebook, a benchmark, the worker). Only ``network`` imports torch; the other modules need numpy
(and scipy for the simulator) only. The Django app (forecasting.windows, forecasting.runs) adapts the
database's buckets to engine series in one place.
"""
