// Optional network hardening (enablePrivateNetworking=true): a VNet with a subnet for Function App
// VNet integration and a subnet for private endpoints; private endpoints and private DNS zones
// for the storage account (blob, queue, table) and the Key Vault. With these in place the storage
// account and the vault switch public network access off.

@description('Virtual network name.')
param vnetName string

@description('Name prefix of the private endpoints.')
param privateEndpointPrefix string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Storage account to reach privately.')
param storageAccountId string

@description('Key Vault to reach privately.')
param keyVaultId string

@description('Address space of the VNet.')
param addressPrefix string = '10.40.0.0/16'

@description('Subnet delegated to the Flex Consumption app (VNet integration).')
param appSubnetPrefix string = '10.40.1.0/24'

@description('Subnet holding the private endpoints.')
param privateEndpointSubnetPrefix string = '10.40.2.0/24'

// Private DNS zone names follow the cloud's own suffixes (public, US Gov, China).
var storageSuffix = environment().suffixes.storage
// keyvaultDns is '.vault.azure.net' (public); the private link zone is privatelink.vaultcore.*.
var keyVaultZone = 'privatelink${replace(environment().suffixes.keyvaultDns, '.vault.', '.vaultcore.')}'

var privateLinks = [
  {
    name: 'blob'
    zone: 'privatelink.blob.${storageSuffix}'
    resourceId: storageAccountId
  }
  {
    name: 'queue'
    zone: 'privatelink.queue.${storageSuffix}'
    resourceId: storageAccountId
  }
  {
    name: 'table'
    zone: 'privatelink.table.${storageSuffix}'
    resourceId: storageAccountId
  }
  {
    name: 'vault'
    zone: keyVaultZone
    resourceId: keyVaultId
  }
]

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'app'
        properties: {
          addressPrefix: appSubnetPrefix
          // The app routes all egress through this subnet and must still reach Microsoft Graph,
          // Entra ID, Azure DevOps and Vercel: keep default outbound access explicitly on (newer
          // network API versions default it to off). Put a NAT gateway here for a fixed egress IP.
          defaultOutboundAccess: true
          // Flex Consumption VNet integration needs this delegation.
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

resource zones 'Microsoft.Network/privateDnsZones@2020-06-01' = [for link in privateLinks: {
  name: link.zone
  location: 'global'
  tags: tags
}]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for (link, i) in privateLinks: {
  parent: zones[i]
  name: '${vnetName}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

resource endpoints 'Microsoft.Network/privateEndpoints@2024-05-01' = [for (link, i) in privateLinks: {
  name: '${privateEndpointPrefix}-${link.name}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: vnet.properties.subnets[1].id
    }
    privateLinkServiceConnections: [
      {
        name: '${privateEndpointPrefix}-${link.name}'
        properties: {
          privateLinkServiceId: link.resourceId
          groupIds: [
            link.name
          ]
        }
      }
    ]
  }
}]

resource zoneGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = [for (link, i) in privateLinks: {
  parent: endpoints[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: link.name
        properties: {
          privateDnsZoneId: zones[i].id
        }
      }
    ]
  }
}]

output appSubnetId string = vnet.properties.subnets[0].id
