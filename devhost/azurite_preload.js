// Loaded into Azurite (node --require) by devhost.testing.AzuriteProcess. The process reading
// Azurite's output may be gone (the local stack killed): a write to that closed pipe is then an
// EPIPE 'error' on stdout, which, unhandled, crashed Azurite in its SIGTERM shutdown before it
// saved its database (LokiJS saves on close, otherwise every 5 s), losing the last writes.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", () => {});
}
