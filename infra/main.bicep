// Entra ID client-secret rotator: everything `azd up` provisions.
// Subscription scope so the resource group is part of the template (azd convention).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; makes resource names unique and tags every resource.')
param environmentName string

@minLength(1)
@description('Region of the resource group and of every regional resource (must offer Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group name; empty derives rg-<environmentName>.')
param resourceGroupName string = ''

@description('Microsoft Graph application permission granted to the rotator. Application.ReadWrite.OwnedBy (default) lets it rotate only apps whose owners include its identity; Application.ReadWrite.All lets it rotate any app in the tenant.')
@allowed([
  'Application.ReadWrite.OwnedBy'
  'Application.ReadWrite.All'
])
param graphPermission string = 'Application.ReadWrite.OwnedBy'

@description('Also grant Application.Read.All for the tenant-wide expiry inventory (GET /api/inventory). Off by default: least privilege.')
param grantInventoryRead bool = false

@description('Also grant AuditLog.Read.All, for credential sign-in evidence (GET /api/applications/{appId}/credentialUsage) and opt-in early retirement of an unused superseded credential. Off by default: least privilege; without it that API answers 403 naming the permission and credentials retire at expiry.')
param grantSignInActivityRead bool = false

@description('Assign Reader on this subscription to the rotator, so the destination pickers (GET /api/destinations/...) and consumer discovery can list resources. Off by default: least privilege; grant Reader by hand on chosen resource groups instead, or accept 403 from those APIs.')
param grantSubscriptionReader bool = false

@description('Grant the Graph permission in this deployment (the deployer needs Privileged Role Administrator). False leaves the grant to an Entra admin afterwards.')
param grantGraphPermission bool = true

@description('Put storage and Key Vault behind private endpoints, integrate the Function App with a VNet, and turn their public network access off.')
param enablePrivateNetworking bool = false

@description('Email address that receives failed-rotation alerts; empty creates the alerts without notifications.')
param alertEmailAddress string = ''

@description('Where Azure Communication Services keeps email data at rest.')
param emailDataLocation string = 'United States'

@description('Browser origins allowed to call the API, e.g. the portal\'s URL.')
param allowedOrigins array = []

@description('Microsoft Graph base URL; empty picks the one for this cloud.')
param graphUrl string = ''

@description('Azure DevOps base URL.')
param devopsUrl string = 'https://dev.azure.com'

@description('Vercel REST API base URL.')
param vercelUrl string = 'https://api.vercel.com'

@description('How API callers authenticate: functionKey (the Functions host checks a function key; a missing or wrong one gets an empty 401 from the host) or entra (Microsoft Entra ID access tokens for apiAudience with the apiRole app role, checked by the app; 401 and 403 are problem+json).')
@allowed([
  'functionKey'
  'entra'
])
param apiAuth string = 'functionKey'

@description('With apiAuth entra: the client id of the API\'s app registration (the aud of its v2.0 access tokens).')
param apiAudience string = ''

@description('With apiAuth entra: the app role a caller\'s token must carry.')
param apiRole string = 'SecretRotation.Manage'

@minLength(1)
@maxLength(40)
@description('Display-name prefix of every credential the rotator creates; it only ever retires its own.')
param credentialPrefix string = 'secret-rotator'

@minValue(5)
@maxValue(240)
@description('Minutes after which a rotation claim whose worker died is taken over.')
param claimTimeoutMinutes int = 30

@minValue(10)
@maxValue(480)
@description('Seconds to keep trying a new secret through Entra propagation delay.')
param verifyTimeoutSeconds int = 180

@minValue(1)
@maxValue(300)
@description('Timeout of every outbound HTTP call, in seconds.')
param httpTimeoutSeconds int = 30

@description('Upper bound of Flex Consumption instances.')
param maximumInstanceCount int = 100

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

var functionAppName = '${abbrs.webSitesFunctions}rotator-${resourceToken}'
// Flex Consumption reads the app package from this container (the name must be 3-63 chars).
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'

// Microsoft Graph is not in environment() (its `graph` is the retired Azure AD Graph), so map the
// cloud name to the Graph national-cloud endpoint. graphUrl overrides it (needed for US DoD,
// https://dod-graph.microsoft.us, and for clouds not listed, which otherwise fail the deployment).
var graphUrlByCloud = {
  AzureCloud: 'https://graph.microsoft.com'
  AzureUSGovernment: 'https://graph.microsoft.us'
  AzureChinaCloud: 'https://microsoftgraph.chinacloudapi.cn'
}
var effectiveGraphUrl = empty(graphUrl) ? graphUrlByCloud[environment().name] : graphUrl

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? '${abbrs.resourcesResourceGroups}${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}rotator-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    enablePrivateNetworking: enablePrivateNetworking
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    enablePrivateNetworking: enablePrivateNetworking
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    alertNamePrefix: '${abbrs.insightsScheduledQueryRules}rotator-${resourceToken}'
    location: location
    tags: tags
    alertEmailAddress: alertEmailAddress
  }
}

module communication 'app/communication.bicep' = {
  name: 'communication'
  scope: rg
  params: {
    communicationServiceName: '${abbrs.communicationServices}${resourceToken}'
    emailServiceName: '${abbrs.communicationEmailServices}${resourceToken}'
    dataLocation: emailDataLocation
    tags: tags
  }
}

module network 'app/network.bicep' = if (enablePrivateNetworking) {
  name: 'network'
  scope: rg
  params: {
    vnetName: '${abbrs.networkVirtualNetworks}${resourceToken}'
    privateEndpointPrefix: '${abbrs.networkPrivateEndpoints}${resourceToken}'
    location: location
    tags: tags
    storageAccountId: storage.outputs.id
    keyVaultId: keyVault.outputs.id
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    communicationServiceName: communication.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

// The app-role assignment to an identity created in this same deployment can fail while Entra
// replicates the new service principal to Microsoft Graph (microsoftgraph/msgraph-bicep-types#193).
// It waits for the Function App and the vault (minutes of deployment), which is the replication
// time in practice; if it still fails, `azd provision` again is safe (every resource is idempotent).
module graphGrant 'app/graph-permission.bicep' = if (grantGraphPermission) {
  name: 'graph-permission'
  scope: rg
  dependsOn: [
    functionApp
    keyVault
  ]
  params: {
    principalId: identity.outputs.principalId
    graphPermission: graphPermission
    grantInventoryRead: grantInventoryRead
    grantSignInActivityRead: grantSignInActivityRead
  }
}

// Opt-in Reader on the whole subscription (the only role above the resource group). It deploys at
// subscription scope, where deployment names are shared by every environment in the subscription
// and pinned to a region, so the name carries the resource token.
module subscriptionRbac 'app/subscription-rbac.bicep' = if (grantSubscriptionReader) {
  name: 'subscription-rbac-${resourceToken}'
  scope: subscription()
  params: {
    principalId: identity.outputs.principalId
  }
}

module functionApp 'app/function.bicep' = {
  name: 'function'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerUrl: '${storage.outputs.blobEndpoint}${storage.outputs.deploymentContainerName}'
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    vaultUri: keyVault.outputs.uri
    acsEndpoint: communication.outputs.endpoint
    emailSender: communication.outputs.senderAddress
    graphUrl: effectiveGraphUrl
    loginAuthority: environment().authentication.loginEndpoint
    armUrl: environment().resourceManager
    devopsUrl: devopsUrl
    vercelUrl: vercelUrl
    credentialPrefix: credentialPrefix
    apiAuth: apiAuth
    apiAudience: apiAudience
    apiRole: apiRole
    claimTimeoutMinutes: claimTimeoutMinutes
    verifyTimeoutSeconds: verifyTimeoutSeconds
    httpTimeoutSeconds: httpTimeoutSeconds
    allowedOrigins: allowedOrigins
    subnetId: enablePrivateNetworking ? network.outputs.appSubnetId : ''
    maximumInstanceCount: maximumInstanceCount
  }
  // The host starts as soon as the app exists; give it its storage roles first.
  dependsOn: [
    rbac
  ]
}

// UPPER_SNAKE outputs become azd environment values.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = 'https://${functionApp.outputs.defaultHostName}'
output ROTATOR_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output ROTATOR_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output ROTATOR_VAULT_URL string = keyVault.outputs.uri
output ROTATOR_ACS_ENDPOINT string = communication.outputs.endpoint
output ROTATOR_EMAIL_SENDER string = communication.outputs.senderAddress
output ROTATOR_GRAPH_PERMISSION string = graphPermission
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
