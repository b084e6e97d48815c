// The one role the rotator's identity can hold above its resource group: Reader on the deployment's
// subscription, opt-in (main.bicep deploys this module only with grantSubscriptionReader). It lets
// the destination pickers and consumer discovery list subscriptions, Key Vaults, API connections,
// App Service / Function Apps and Automation accounts and runbooks. Reader changes nothing and has
// no data actions or list* actions (no keys, app settings or vault secrets), but it does see the
// configuration of every resource in the subscription: where the pickers need only some resource
// groups, leave this off and grant Reader by hand on those groups (docs/deployment.md).
//
// Subscription scope, because a resource group deployment (app/rbac.bicep) cannot assign a role
// above its group. A module rather than a resource in main.bicep: the assignment's name must be
// known when the deployment starts, and the identity's principal id is only known here, as a param.
targetScope = 'subscription'

@description('Principal (object) id of the rotator\'s user-assigned identity.')
param principalId string

// Reader (built-in; the same id in every tenant and cloud): view everything, change nothing.
var reader = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'

// Deterministic name (guid(scope, principal, role)), as in app/rbac.bicep: re-deploying is a no-op
// and a second environment in the same subscription gets its own assignment.
resource subscriptionReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, reader)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', reader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
