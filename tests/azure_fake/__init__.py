"""A fake Azure ML workspace for the azureml backend's tests: the real SDK talks to it, every PUT body is
checked against the ARM schemas. In process: FakeTransport(FakeWorkspace()); over TLS: tls.FakeServer."""
