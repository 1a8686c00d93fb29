// solidity-coverage: test helpers are not product code.
module.exports = {
  skipFiles: ["test/"],
};
