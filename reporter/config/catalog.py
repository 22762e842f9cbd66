"""What every built-in KPI is: id, labels, unit, direction, data it needs, default window, definition.

The metadata lives here, below every stage, so config rules can check tiers against it;
compute/kpis.py registers one implementation per id.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KpiInfo:
    id: str
    en: str
    zh_CN: str
    unit: str            # percent | currency | count | number | days | hours | ratio | score
    direction: str       # up: higher is better, down: lower is better
    needs: tuple[str, ...]
    window: str
    definition: str

    def label(self, locale: str) -> str:
        return self.zh_CN if locale == "zh_CN" else self.en


def _k(id, en, zh, unit, direction, needs, window, definition) -> KpiInfo:
    """needs: the entities the KPI reads; the first one is required, the others enrich it."""
    return KpiInfo(id, en, zh, unit, direction, tuple(needs.split()), window, definition)


BUILTIN_KPIS: dict[str, KpiInfo] = {
    k.id: k
    for k in (
        _k("csat", "Customer satisfaction", "客户满意度", "percent", "up", "surveys", "trailing_90d",
           "Share of CSAT responses scoring 4 or 5 on the 1-5 scale in the window (option: the mean score)."),
        _k("nps", "Net Promoter Score", "推荐指数", "score", "up", "surveys", "trailing_90d",
           "Percentage of promoters (9-10) minus percentage of detractors (0-6) among NPS responses, from -100 to 100."),
        _k("ces", "Customer effort score", "客户费力度", "number", "down", "surveys", "trailing_90d",
           "Mean customer effort score of the responses in the window; lower means easier to do business with."),
        _k("revenue", "Revenue", "收入", "currency", "up", "orders", "month",
           "Sum of order amounts in the window."),
        _k("revenue_growth", "Revenue growth", "收入增长", "percent", "up", "orders", "trailing_12m",
           "Revenue in the window divided by revenue in the same window a year earlier, minus one."),
        _k("gross_margin", "Gross margin", "毛利率", "percent", "up", "orders", "trailing_12m",
           "Sum of (amount minus cost) divided by the sum of amounts in the window."),
        _k("clv_historical", "Historical lifetime value", "历史客户生命周期价值", "currency", "up", "orders", "lifetime",
           "Sum of gross margin of every order since the account's first order."),
        _k("clv_predicted", "Predicted lifetime value", "预测客户生命周期价值", "currency", "up", "orders", "lifetime",
           "Expected purchases over the next 12 months (BG/NBD model) times expected order value (Gamma-Gamma model), "
           "discounted monthly."),
        _k("p_alive", "Probability active", "存活概率", "percent", "up", "orders", "lifetime",
           "Probability under the BG/NBD model that the account is still buying, from its purchase rhythm and recency."),
        _k("repurchase_rate", "Repurchase rate", "复购率", "percent", "up", "orders", "trailing_12m",
           "Share of the months in the window with at least one order."),
        _k("order_frequency", "Order frequency", "购买频率", "number", "up", "orders", "trailing_90d",
           "Orders per month in the window."),
        _k("net_revenue_retention", "Net revenue retention", "净收入留存", "percent", "up", "orders", "trailing_12m",
           "Revenue in the window divided by revenue in the prior window of equal length."),
        _k("gross_revenue_retention", "Gross revenue retention", "总收入留存", "percent", "up", "orders", "trailing_12m",
           "The lesser of revenue and prior-window revenue, divided by prior-window revenue (at most 100%)."),
        _k("complaints", "Complaints", "投诉数", "count", "down", "tickets", "trailing_90d",
           "Number of tickets flagged as complaints opened in the window."),
        _k("first_response_hours", "First response time", "首次响应时间", "hours", "down", "tickets", "trailing_90d",
           "Median hours from a ticket being opened to its first response."),
        _k("resolution_hours", "Resolution time", "解决时长", "hours", "down", "tickets", "trailing_90d",
           "Median hours from opening to resolution, over resolved tickets."),
        _k("sla_compliance", "SLA compliance", "服务达标率", "percent", "up", "tickets", "trailing_90d",
           "Tickets resolved within their SLA hours divided by tickets that have an SLA."),
        _k("complaint_resolution_rate", "Complaint resolution rate", "投诉解决率", "percent", "up", "tickets", "trailing_90d",
           "Resolved complaints divided by complaints opened in the window."),
        _k("ticket_satisfaction", "Ticket satisfaction", "投诉处理满意度", "number", "up", "tickets", "trailing_90d",
           "Mean post-resolution satisfaction rating (1-5) of tickets in the window."),
        _k("interaction_frequency", "Interaction frequency", "互动频率", "number", "up", "interactions", "trailing_90d",
           "Interactions (meetings, calls, emails, visits, reviews) per month in the window."),
        _k("days_since_contact", "Days since last contact", "距上次互动天数", "days", "down", "interactions", "lifetime",
           "Days from the last interaction to the end of the period."),
        _k("relationship_breadth", "Relationship breadth", "关系广度", "count", "up", "contacts interactions", "lifetime",
           "Distinct departments with an active contact or an interaction in the window."),
        _k("relationship_depth", "Relationship depth", "关系深度", "percent", "up", "interactions contacts", "trailing_12m",
           "Share of interactions held with director or executive contacts; the note says whether a decision maker is known."),
        _k("product_penetration", "Product penetration", "产品渗透率", "percent", "up", "orders", "trailing_12m",
           "Product lines bought in the window divided by the product lines the portfolio offers."),
        _k("cross_sell_revenue_share", "Cross-sell revenue share", "交叉/追加销售占比", "percent", "up",
           "opportunities orders", "trailing_12m",
           "Amount of won cross-sell and upsell opportunities closed in the window divided by revenue."),
        _k("conversion_rate", "Win rate", "转化率", "percent", "up", "opportunities", "trailing_12m",
           "Won opportunities divided by won plus lost opportunities closed in the window."),
        _k("cost_to_serve", "Cost to serve", "客户维系成本", "percent", "down", "costs orders", "trailing_12m",
           "Retention and service costs divided by revenue in the window."),
    )
}

PORTFOLIO_KPIS: dict[str, KpiInfo] = {
    k.id: k
    for k in (
        _k("retention_rate", "Retention rate", "客户保留率", "percent", "up", "accounts", "month",
           "(Accounts at the end of the period minus new accounts) divided by accounts at the start."),
        _k("churn_rate", "Churn rate", "客户流失率", "percent", "down", "accounts", "month",
           "Accounts lost in the period divided by accounts at the start (new accounts excluded)."),
        _k("acquisition_rate", "Acquisition rate", "客户获取率", "percent", "up", "accounts", "month",
           "New accounts in the period divided by accounts at the end."),
        _k("cac", "Customer acquisition cost", "客户获取成本", "currency", "down", "costs accounts", "month",
           "Acquisition, sales and marketing costs in the period divided by new accounts."),
        _k("nrr", "Net revenue retention", "净收入留存", "percent", "up", "orders", "trailing_12m",
           "Revenue in the window from accounts that existed at its start, divided by their revenue in the prior window."),
        _k("grr", "Gross revenue retention", "总收入留存", "percent", "up", "orders", "trailing_12m",
           "Same cohort as NRR, each account's revenue capped at its prior-window revenue."),
    )
}
