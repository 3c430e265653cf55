"""o365emu: an Office 365 emulator (Entra token endpoint, Exchange Online admin API, Microsoft Graph
lookups) for certsync's tests. See ../README.md for every endpoint, the admin API and the points where
it follows Microsoft's documentation over ../../../../shared/o365-contract.md."""
