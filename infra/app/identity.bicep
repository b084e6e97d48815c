// The rotator's one identity. A user-assigned identity (not system-assigned) so that its
// principal exists before the Function App does: role assignments and the Graph app-role grant
// can be made in the same deployment, and survive a re-created Function App.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags for the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
