// The Function App on Flex Consumption (FC1), Python 3.11, running as the rotator's
// user-assigned identity. Every app setting the code reads (shared/config.py SETTINGS with
// deployed=True) is set here under exactly that name; tests/infra checks it.

@description('Function App name.')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('azd service name this app receives code for (azure.yaml services key).')
param azdServiceName string = 'api'

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('The storage account\'s blob endpoint (primaryEndpoints.blob).')
param storageBlobEndpoint string

@description('The storage account\'s queue endpoint (primaryEndpoints.queue).')
param storageQueueEndpoint string

@description('The storage account\'s table endpoint (primaryEndpoints.table).')
param storageTableEndpoint string

@description('URL of the blob container holding the deployment package.')
param deploymentContainerUrl string

@description('Application Insights connection string (not a secret: local auth is disabled).')
param applicationInsightsConnectionString string

@description('URI of the rotator\'s own Key Vault.')
param vaultUri string

@description('Azure Communication Services endpoint (https://<hostName>).')
param acsEndpoint string

@description('Sender address of notification emails.')
param emailSender string

@description('Microsoft Graph base URL, without /v1.0.')
param graphUrl string

@description('Entra ID login authority.')
param loginAuthority string

@description('Azure Resource Manager base URL.')
param armUrl string

@description('Azure DevOps base URL.')
param devopsUrl string

@description('Vercel REST API base URL.')
param vercelUrl string

@description('Display-name prefix of every credential the rotator creates.')
param credentialPrefix string

@description('functionKey or entra: who checks API callers (the host, or the app with Entra ID tokens).')
@allowed([
  'functionKey'
  'entra'
])
param apiAuth string

@description('With apiAuth entra: the audience (client id) of the API\'s access tokens.')
param apiAudience string

@description('With apiAuth entra: the app role a caller needs.')
param apiRole string

@description('Minutes after which a dead worker\'s rotation claim is taken over.')
param claimTimeoutMinutes int

@description('Seconds to keep trying a new secret through Entra propagation delay.')
param verifyTimeoutSeconds int

@description('Timeout of every outbound HTTP call, in seconds.')
param httpTimeoutSeconds int

@description('Browser origins allowed to call the API (the portal); empty allows none.')
param allowedOrigins array = []

@description('Subnet for VNet integration; empty means no VNet integration.')
param subnetId string = ''

@description('Upper bound of Flex Consumption instances (the plan allows 40 to 1,000; rate limits are kept across instances by the app).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory per instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    // Linux: Flex Consumption has no Windows workers.
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': azdServiceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // The portal calls the API from outside Azure, so inbound stays public; function keys
    // (and optionally Easy Auth) guard it. Outbound goes through the VNet when it exists.
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    // Key Vault references (none today) would resolve with the same identity.
    keyVaultReferenceIdentity: identityId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          // The platform fetches the package as the app's identity: no storage key.
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      // No ftpsState or vnetRouteAllEnabled: Flex Consumption rejects them (ARM error 51021).
      // FTP stays off through the basic-publishing policies below; with a subnet, Flex routes all
      // outbound traffic through it.
      http20Enabled: true
      cors: {
        allowedOrigins: allowedOrigins
        supportCredentials: false
      }
      // Flex Consumption takes the runtime from functionAppConfig, so FUNCTIONS_WORKER_RUNTIME
      // and FUNCTIONS_EXTENSION_VERSION must not be set here.
      appSettings: [
        // Identity-based storage connection for the host and the app (no connection string). The
        // service URIs come from the account, so sovereign clouds work (accountName alone assumes
        // the public cloud's storage suffix, learn "Connecting to host storage with an identity").
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: storageBlobEndpoint
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: storageQueueEndpoint
        }
        {
          name: 'AzureWebJobsStorage__tableServiceUri'
          value: storageTableEndpoint
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        // Telemetry: the worker configures azure-monitor-opentelemetry itself, and sends with an
        // Entra token for the identity (the component refuses key-only ingestion).
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: applicationInsightsConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'Authorization=AAD;ClientId=${identityClientId}'
        }
        {
          name: 'PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY'
          value: 'true'
        }
        // Export the rotator's own loggers only: without it the worker exports the root logger,
        // the exporter's own records and every HTTP request line included.
        {
          name: 'PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME'
          value: 'rotator'
        }
        // The rotator's own settings (shared/config.py).
        {
          name: 'ROTATOR_TENANT_ID'
          value: tenant().tenantId
        }
        {
          name: 'ROTATOR_VAULT_URL'
          value: vaultUri
        }
        {
          name: 'ROTATOR_MANAGED_IDENTITY_CLIENT_ID'
          value: identityClientId
        }
        // Token audiences follow the cloud, never the configured URLs.
        {
          name: 'ROTATOR_CLOUD'
          value: environment().name
        }
        {
          name: 'ROTATOR_GRAPH_URL'
          value: graphUrl
        }
        {
          name: 'ROTATOR_LOGIN_AUTHORITY'
          value: loginAuthority
        }
        {
          name: 'ROTATOR_ARM_URL'
          value: armUrl
        }
        {
          name: 'ROTATOR_DEVOPS_URL'
          value: devopsUrl
        }
        {
          name: 'ROTATOR_VERCEL_URL'
          value: vercelUrl
        }
        {
          name: 'ROTATOR_ACS_ENDPOINT'
          value: acsEndpoint
        }
        {
          name: 'ROTATOR_EMAIL_SENDER'
          value: emailSender
        }
        {
          name: 'ROTATOR_CREDENTIAL_PREFIX'
          value: credentialPrefix
        }
        {
          name: 'ROTATOR_API_AUTH'
          value: apiAuth
        }
        {
          name: 'ROTATOR_API_AUDIENCE'
          value: apiAudience
        }
        {
          name: 'ROTATOR_API_ROLE'
          value: apiRole
        }
        {
          name: 'ROTATOR_CLAIM_TIMEOUT_MINUTES'
          value: string(claimTimeoutMinutes)
        }
        {
          name: 'ROTATOR_VERIFY_TIMEOUT_SECONDS'
          value: string(verifyTimeoutSeconds)
        }
        {
          name: 'ROTATOR_HTTP_TIMEOUT_SECONDS'
          value: string(httpTimeoutSeconds)
        }
      ]
    }
  }
}

// Basic (user/password) publishing is off for FTP and SCM: deployments authenticate with Entra ID.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = functionApp.id
output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
