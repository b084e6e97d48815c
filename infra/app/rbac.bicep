// Every Azure role the rotator's identity holds in its resource group, each on the one resource
// that needs it. Assignment names are deterministic (guid(scope, principal, role)), so re-deploying
// is a no-op and a second environment never collides. The only role above the group, Reader on the
// subscription, is opt-in and lives in app/subscription-rbac.bicep (a group deployment cannot
// assign it).
//
// Roles the rotator needs on OTHER resources (integration Key Vaults, Logic App connections,
// App Service, Automation) are granted per integration by the operator: see docs/deployment.md.

@description('Principal (object) id of the rotator\'s user-assigned identity.')
param principalId string

@description('Storage account holding the runtime state, tables, queues and deployment package.')
param storageAccountName string

@description('The rotator\'s own Key Vault.')
param keyVaultName string

@description('Communication Services resource used to send email.')
param communicationServiceName string

@description('Application Insights component receiving the app\'s telemetry.')
param applicationInsightsName string

// Built-in role definition ids (the same in every tenant and cloud).
// Storage Table Data Contributor: read/write the applications, rotationdue, secretexpiry and rotationlog tables.
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
// Storage Queue Data Contributor: enqueue rotations; the host reads, deletes, poisons messages.
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
// Storage Blob Data Owner: the Functions host keeps leases and timer state in blobs and the
// platform reads the deployment package (the role the Functions docs name for AzureWebJobsStorage).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// Key Vault Secrets Officer: stage, read and disable secrets in the rotator's own vault only.
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
// Communication and Email Service Owner: ACS has no narrower built-in role that can send email
// with an Entra token (sending is authorised by write access to the resource). Scoped to this
// one ACS resource, whose local auth is disabled, so the key actions it includes are inert.
var communicationAndEmailServiceOwner = '09976791-48a7-449e-bb21-39d1a415f350'
// Monitoring Metrics Publisher: send telemetry to a component with local auth disabled.
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource communicationService 'Microsoft.Communication/communicationServices@2025-09-01' existing = {
  name: communicationServiceName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource tableData 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueData 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource blobData 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource vaultSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource emailSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(communicationService.id, principalId, communicationAndEmailServiceOwner)
  scope: communicationService
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', communicationAndEmailServiceOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
