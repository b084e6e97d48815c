// The rotator's own Key Vault: every new secret is staged here the moment Graph returns it
// (the secret text is shown only once), before any integration receives it.

@description('Key Vault name (3-24 characters).')
param name string

@description('Azure region.')
param location string

@description('Tags for the vault.')
param tags object = {}

@description('When true, the vault is reachable only through its private endpoint.')
param enablePrivateNetworking bool = false

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    // Azure RBAC, not access policies: the identity gets one role on this vault and nothing else.
    enableRbacAuthorization: true
    // A deleted secret (or vault) can be recovered for 90 days, and nobody can purge it early:
    // a staged secret may be the only copy of a live credential.
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: enablePrivateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: enablePrivateNetworking ? 'Deny' : 'Allow'
    }
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
