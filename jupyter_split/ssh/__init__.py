"""SSH transport: one verified connection per site (`connection`, `login`, `hostkeys`), the runner's
bootstrap on a bare host (`bootstrap`, `wheelhouse`) and `ssh://` storage with checked host keys
(`store`)."""
