-- wrk script: POST the shipped traveller slate request with the app token in $APP.
-- Each request uses its own subject so caps do not empty the slate.
local body_template = [[{"placement": "app-home", "subject": "load-%d", "profile": %s}]]
local profile = [[{"days_since_last_purchase": 2, "purchases_90d": 40, "spend_90d_minor": 2500000,
  "category_spend_share": {"travel": 0.45, "grocery": 0.3, "electronics": 0.25},
  "tier": "high-value", "lifecycle": "revolving-installment-eligible", "region": "CN-SH-PD",
  "cobrand_cards": ["skyways"], "marketing_consent": true}]]
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/v1/slates", {
    ["content-type"] = "application/json",
    ["authorization"] = "Bearer " .. os.getenv("APP"),
  }, string.format(body_template, n, profile))
end
