// Clarifai's official JavaScript client (clarifai@2.9.1, unmodified) over what it can see of the wire
// issue: geo, regions, crop, clauses by id, workflows, video, concept search, the shape of a prediction.
// Run by tests/test_clarifai_client.py. Arguments: base URL, API key, VIDEO, SHOE, HAT. Prints
// "ok <case>" per case and "JS SURFACE PASSED"; any failure exits non-zero.
const fs = require('fs');
const assert = require('assert');
const Clarifai = require('clarifai');

const [base, key, video, shoe, hat] = process.argv.slice(2);
const b64 = (p) => fs.readFileSync(p).toString('base64');
const ok = (name) => console.log('ok ' + name);

async function main() {
  const app = new Clarifai.App({apiKey: key, apiEndpoint: base});

  await app.inputs.create([
    {base64: b64(shoe), id: 'js-sf', concepts: [{id: 'shoes'}], geo: {longitude: -122.4194, latitude: 37.7749},
     crop: [0.05, 0.05, 0.95, 0.95]},
    {base64: b64(hat), id: 'js-la', concepts: [{id: 'hat'}], geo: {longitude: -118.2437, latitude: 34.0522},
     regions: [{id: 'r1', region_info: {bounding_box: {top_row: 0.1, left_col: 0.1, bottom_row: 0.5, right_col: 0.5}},
                data: {concepts: [{id: 'hat', value: 1}]}}]},
  ]);
  const got = await app.inputs.get('js-sf');
  assert.deepStrictEqual(got.geo.geoPoint, {longitude: -122.4194, latitude: 37.7749});
  const near = await app.inputs.search({input: {geo: {longitude: -122.4, latitude: 37.7, type: 'withinMiles', value: 50}}});
  assert.deepStrictEqual(near.hits.map((h) => h.input.id), ['js-sf']);
  const boxed = await app.inputs.search({input: {geo: [{longitude: -119, latitude: 33}, {longitude: -118, latitude: 35}]}});
  assert.deepStrictEqual(boxed.hits.map((h) => h.input.id), ['js-la']);
  ok('geo');

  const la = await app.inputs.get('js-la');
  assert.strictEqual(la.regions[0].id, 'r1');
  assert.deepStrictEqual(got.rawData.data.image.crop, [0.05, 0.05, 0.95, 0.95]);
  ok('regions and crop');

  const byId = await app.inputs.search({input: {id: 'js-la', type: 'input'}});
  assert.deepStrictEqual(byId.hits.map((h) => h.input.id), ['js-la']);
  const cropped = await app.inputs.search({input: {id: 'js-la', crop: [0, 0, 0.3, 0.3]}});
  assert.ok(cropped.hits[0].score < 0.999, JSON.stringify(cropped.hits[0]));
  ok('clauses by id, crop');

  const concepts = await app.concepts.search('*');
  assert.deepStrictEqual(concepts.rawData.map((c) => c.id).sort(), ['hat', 'shoes']);
  ok('concept search');

  await app.models.create({id: 'js-model'}, [{id: 'shoes'}, {id: 'hat'}]);
  const model = await app.models.initModel('js-model');
  await model.train(true);
  const answer = await app.models.predict('js-model', {base64: b64(hat)});
  const output = answer.rawData.outputs[0];
  assert.deepStrictEqual(Object.keys(output.data), ['concepts']);
  assert.ok(output.loupe && output.loupe.neighbours.length > 0);
  assert.ok(output.input.data.image.url.startsWith(base));
  const clip = await app.models.predict('js-model', {base64: b64(video)}, {video: true, sampleMs: 1000});
  assert.strictEqual(clip.rawData.outputs[0].data.frames.length, 4);
  ok('predict and video');

  await app.workflow.create('js-flow', {modelId: 'js-model'});
  const flows = await app.workflows.list();
  assert.strictEqual(flows[0].id, 'js-flow');
  assert.strictEqual(flows[0].rawData.nodes[0].id, 'concepts');
  const run = await app.workflow.predict('js-flow', {base64: b64(hat)}, {maxConcepts: 1});
  assert.strictEqual(run.results[0].outputs[0].data.concepts.length, 1);
  await app.workflows.delete('js-flow');
  assert.strictEqual((await app.workflows.list()).length, 0);
  ok('workflows');
  console.log('JS SURFACE PASSED');
}

main().catch((err) => {
  console.error(err && err.response ? JSON.stringify(err.response.data) : err);
  process.exit(1);
});
