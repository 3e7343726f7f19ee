"""The Azure ML backend (SDK v2, `pip install 'opml[azureml]'`): opml's stages mapped onto MLClient operations.

Importing this package imports nothing from Azure; each submodule imports azure-ai-ml inside its functions,
so only a command that runs on this backend pays for it. The CLI reaches it through opml.backends.azure:

- `client.connect(cfg)` -> AzureML (MLClient + credential), then
- `auth.summary(az, create_compute=...)`, `auth.token(az)`;
- `data.register_dataset(az, spec, name=, path=, url=, label=, sha256=, progress=)`, `data.list_datasets(az)`,
  `data.get_dataset(az, ref)`;
- `train.train(az, settings, data=, on_trial=, on_status=, on_submit=, no_wait=)` (progress.JobProgress prints
  it), `train.list_runs(az, experiment)`, `train.get_run(az, run_id)`; `models.list_models(az)`,
  `models.get_model(az, ref)`;
- `dryrun.data_files(...)`, `dryrun.train_files(...)`: the files `az ml data create -f` / `az ml job create -f`
  take, written without contacting Azure.
"""
