"""Our narrow interface over Azure Table and Queue storage."""
