"""Studies across results: ranking (weight-sharing vs standalone ground truth, Kendall tau),
why weight sharing ranks below the seed ceiling (ws_shortfall) and cross-hardware latency
prediction. Each study gets one module here; the notebooks call
them on files that earlier notebooks wrote."""
