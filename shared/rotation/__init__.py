"""The rotation protocol: claim, create, stage, verify, deploy, notify, finish, retire."""
