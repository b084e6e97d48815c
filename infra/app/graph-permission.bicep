// Grants the rotator's identity its Microsoft Graph application permissions (one by default, plus
// opt-in read permissions), with the Microsoft Graph Bicep extension (alias in
// infra/bicepconfig.json). Granting a Microsoft Graph application permission needs Privileged Role
// Administrator (or Global Administrator) in Entra; see docs/deployment.md for deploying without it
// (grantGraphPermission=false).
extension microsoftGraphV1

@description('Principal (object) id of the rotator\'s user-assigned identity.')
param principalId string

@description('Application.ReadWrite.OwnedBy (default) manages only apps the identity owns; Application.ReadWrite.All manages every app in the tenant.')
@allowed([
  'Application.ReadWrite.OwnedBy'
  'Application.ReadWrite.All'
])
param graphPermission string = 'Application.ReadWrite.OwnedBy'

@description('Also grant Application.Read.All, so the expiry inventory (GET /api/inventory) sees every app in the tenant, not only owned ones.')
param grantInventoryRead bool = false

@description('Also grant AuditLog.Read.All, so the rotator can read when each credential last signed in (Graph beta report appCredentialSignInActivities: GET /api/applications/{appId}/credentialUsage, and opt-in early retirement of an unused superseded credential). Off by default: least privilege.')
param grantSignInActivityRead bool = false

// The Microsoft Graph first-party application: this appId is the same in every tenant.
var microsoftGraphAppId = '00000003-0000-0000-c000-000000000000'

// App-role ids of Microsoft Graph application permissions (Graph permissions reference; the same
// in every tenant). Ids rather than a lookup by name keep the grant reviewable in the template.
// Application.ReadWrite.OwnedBy: "Manage apps that this app creates or owns" (least privilege).
var applicationReadWriteOwnedBy = '18a4783c-866b-4cc7-a460-3d5e5662c884'
// Application.ReadWrite.All: "Read and write all applications" (tenant-wide; opt-in only).
var applicationReadWriteAll = '1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9'

// Application.Read.All: "Read all applications" (only for the tenant-wide expiry inventory; opt-in).
var applicationReadAll = '9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30'

// AuditLog.Read.All: "Read all audit log data" (only for the credential sign-in report; opt-in).
// It reads the tenant's audit and sign-in logs, more than the report needs, but it is the least
// privileged permission Graph accepts for appCredentialSignInActivities. Without it the report
// answers 403 and superseded credentials retire at expiry.
var auditLogReadAll = 'b0afded3-3588-46d8-8b3d-9842eff778da'

var appRoleIds = {
  'Application.ReadWrite.OwnedBy': applicationReadWriteOwnedBy
  'Application.ReadWrite.All': applicationReadWriteAll
}

resource microsoftGraph 'Microsoft.Graph/servicePrincipals@v1.0' existing = {
  appId: microsoftGraphAppId
}

resource graphAppRole 'Microsoft.Graph/appRoleAssignedTo@v1.0' = {
  appRoleId: appRoleIds[graphPermission]
  principalId: principalId
  resourceId: microsoftGraph.id
}

resource inventoryAppRole 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (grantInventoryRead) {
  appRoleId: applicationReadAll
  principalId: principalId
  resourceId: microsoftGraph.id
}

resource signInActivityAppRole 'Microsoft.Graph/appRoleAssignedTo@v1.0' = if (grantSignInActivityRead) {
  appRoleId: auditLogReadAll
  principalId: principalId
  resourceId: microsoftGraph.id
}

output appRoleId string = graphAppRole.appRoleId
