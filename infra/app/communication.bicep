// Azure Communication Services email: an Email Communication Service with an Azure-managed
// sender domain (DoNotReply@<guid>.azurecomm.net, no DNS work), linked to a Communication
// Services resource that the app calls with its managed identity.

@description('Communication Services resource name.')
param communicationServiceName string

@description('Email Communication Service name.')
param emailServiceName string

@description('Where ACS stores data at rest, e.g. "United States", "Europe", "UK".')
param dataLocation string

@description('Tags for every resource.')
param tags object = {}

resource emailService 'Microsoft.Communication/emailServices@2025-09-01' = {
  name: emailServiceName
  // ACS resources are global; dataLocation decides residency.
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
  }
}

resource managedDomain 'Microsoft.Communication/emailServices/domains@2025-09-01' = {
  parent: emailService
  // The one name Azure accepts for an Azure-managed domain.
  name: 'AzureManagedDomain'
  location: 'global'
  tags: tags
  properties: {
    domainManagement: 'AzureManaged'
    // Notification emails carry no tracking pixels or rewritten links.
    userEngagementTracking: 'Disabled'
  }
}

resource communicationService 'Microsoft.Communication/communicationServices@2025-09-01' = {
  name: communicationServiceName
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
    linkedDomains: [
      managedDomain.id
    ]
    // Entra ID only: the access keys (and connection strings) stop working.
    disableLocalAuth: true
  }
}

output id string = communicationService.id
output name string = communicationService.name
output endpoint string = 'https://${communicationService.properties.hostName}'
// An Azure-managed domain comes with the DoNotReply sender username already provisioned.
output senderAddress string = 'DoNotReply@${managedDomain.properties.mailFromSenderDomain}'
