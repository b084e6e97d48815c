// Telemetry: a Log Analytics workspace, workspace-based Application Insights with local
// (instrumentation-key) auth disabled, and log alerts on the rotator's failure events.

@description('Log Analytics workspace name.')
param logAnalyticsName string

@description('Application Insights component name.')
param applicationInsightsName string

@description('Name prefix of the alert rules and the action group.')
param alertNamePrefix string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Who is emailed when an alert fires; empty means the alerts only show in the portal.')
param alertEmailAddress string = ''

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
    features: {
      // Only Entra ID callers may query or ingest: no shared workspace keys.
      disableLocalAuth: true
    }
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    IngestionMode: 'LogAnalytics'
    // Telemetry is accepted only with an Entra token (Monitoring Metrics Publisher), so the
    // connection string alone cannot be used to write into this component.
    DisableLocalAuth: true
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmailAddress)) {
  name: '${alertNamePrefix}-ag'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'rotator'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmailAddress
        useCommonAlertSchema: true
      }
    ]
  }
}

// The app writes one log record per rotation event with the custom dimension `event`; in a
// workspace-based component it lands in AppTraces.Properties.
var rotationFailedQuery = 'AppTraces | where Properties.event == "rotation.failed"'
var integrationFailedQuery = 'AppTraces | where Properties.event == "integration.failed"'

resource rotationFailedAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${alertNamePrefix}-rotation-failed'
  location: location
  tags: tags
  properties: {
    displayName: 'Secret rotation failed'
    description: 'A client-secret rotation ended in rotation.failed: the application may keep an expiring secret.'
    // Sev 1: an unrotated secret expires and breaks its consumers.
    severity: 1
    enabled: true
    scopes: [
      logAnalytics.id
    ]
    // The timer scans every 15 minutes; evaluate on the same cadence.
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: rotationFailedQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: empty(alertEmailAddress) ? [] : [
        actionGroup.id
      ]
    }
  }
}

resource integrationFailedAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${alertNamePrefix}-integration-failed'
  location: location
  tags: tags
  properties: {
    displayName: 'Secret deployment to an integration failed'
    description: 'A new secret could not be delivered to an integration (integration.failed): that consumer still holds the old secret.'
    severity: 2
    enabled: true
    scopes: [
      logAnalytics.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: integrationFailedQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: empty(alertEmailAddress) ? [] : [
        actionGroup.id
      ]
    }
  }
}

output logAnalyticsId string = logAnalytics.id
output applicationInsightsId string = applicationInsights.id
output applicationInsightsName string = applicationInsights.name
// Not a secret: with local auth disabled it only names the endpoint; writes need an Entra token.
output applicationInsightsConnectionString string = applicationInsights.properties.ConnectionString
