// The plan: the current subscription and its tokens, switching plans, cancelling and resuming.

import { gql } from '../api.js';
import { format, h } from '../dom.js';

const PLAN = `query Plan { plans { tier name priceCents currency tokenLimit requestsPerMinute features }
  me { subscription { status cancelAtPeriodEnd scheduledTier currentPeriodEnd tokensUsed tokenLimit tokensRemaining
    plan { tier name } } } }`;
const SUBSCRIPTION_FIELDS = 'status checkoutUrl plan { tier name }';

export async function view(main, params) {
  const { plans, me } = await gql(PLAN);
  const current = me.subscription;
  const message = h('div', { 'aria-live': 'polite' });
  const act = async (mutation, variables, done) => {
    message.replaceChildren();
    try {
      const data = await gql(mutation, variables);
      const result = Object.values(data)[0];
      if (result?.checkoutUrl) {
        message.append(h('p', { class: 'notice' }, 'Finish paying with the provider: ', h('a', { href: result.checkoutUrl, rel: 'noopener' }, 'open the checkout'), '.'));
        return;
      }
      window.dispatchEvent(new HashChangeEvent('hashchange'));
      if (done) done();
    } catch (error) {
      message.append(h('p', { class: 'error', role: 'alert' }, error.message));
    }
  };
  if (params.get('welcome')) {
    main.append(h('p', { class: 'notice' }, 'Welcome! We mailed you a link to verify your address. Choose a plan to start using tools.'));
  }
  main.append(current
    ? h('section', { 'aria-label': 'Your plan' },
      h('p', {}, 'You are on the ', h('strong', {}, current.plan.name), ` plan (${current.status.toLowerCase()}), until ${format.day(current.currentPeriodEnd)}.`),
      h('p', {}, `${format.number(current.tokensUsed)} tokens used`, current.tokenLimit === null ? ' (no limit).' : ` of ${format.number(current.tokenLimit)}; ${format.number(current.tokensRemaining)} left.`),
      current.cancelAtPeriodEnd
        ? h('p', {}, 'It ends at the end of the period. ', h('button', { type: 'button', onclick: () => act(`mutation { resumeSubscription { ${SUBSCRIPTION_FIELDS} } }`) }, 'Keep it'))
        : h('button', { type: 'button', class: 'plain', onclick: () => act(`mutation { cancelSubscription { ${SUBSCRIPTION_FIELDS} } }`) }, 'Cancel at the end of the period'))
    : h('p', {}, 'You have no plan yet.'));
  main.append(message, h('ul', { class: 'cards', 'aria-label': 'Plans' }, ...plans.map((plan) => h('li', { class: 'card' },
    h('h3', {}, plan.name),
    h('p', {}, plan.priceCents === 0 || plan.priceCents === '0' ? 'Free' : `${(Number(plan.priceCents) / 100).toFixed(2)} ${plan.currency} a month`),
    h('ul', {}, ...plan.features.map((f) => h('li', {}, f))),
    current?.plan.tier === plan.tier
      ? h('p', { class: 'ok' }, 'Your plan')
      : h('button', { type: 'button', onclick: () => act(`mutation Subscribe($tier: PlanTier!) { subscribe(tier: $tier) { ${SUBSCRIPTION_FIELDS} } }`, { tier: plan.tier }) }, `Choose ${plan.name}`)))));
}
